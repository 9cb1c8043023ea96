import { badRequest } from '@platform/http-common';
import { MAX_REVIEW_IMAGES } from '../schemas/admission.js';
import { field as shortField } from './shorten.js';

/** One image a pod would run, and where it stands in the object when that is known. */
export class ContainerImage {
  constructor(
    readonly image: string,
    /**
     * `containers`, `initContainers`, `ephemeralContainers` or `volumes` (an image volume, whose
     * reference is mounted as a volume); absent for an ImageReview entry.
     */
    readonly field?: string,
    private readonly index = 0,
    readonly name?: string,
  ) {}

  /** Where it stands, e.g. `initContainers[0] (setup)`; only denials need it, so it is made then. */
  get container(): string | undefined {
    if (this.field === undefined) return undefined;
    return `${this.field}[${this.index}]${this.name === undefined ? '' : ` (${shortField(this.name)})`}`;
  }
}

type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The API groups a kind is served from, and where it keeps its pod spec. */
interface PodSpecKind {
  groups: readonly string[];
  path: readonly string[];
}

// `extensions` served Deployments, DaemonSets and ReplicaSets before Kubernetes 1.16.
const POD_SPEC_KINDS: Record<string, PodSpecKind> = {
  Pod: { groups: [''], path: ['spec'] },
  Deployment: { groups: ['apps', 'extensions'], path: ['spec', 'template', 'spec'] },
  StatefulSet: { groups: ['apps'], path: ['spec', 'template', 'spec'] },
  DaemonSet: { groups: ['apps', 'extensions'], path: ['spec', 'template', 'spec'] },
  ReplicaSet: { groups: ['apps', 'extensions'], path: ['spec', 'template', 'spec'] },
  ReplicationController: { groups: [''], path: ['spec', 'template', 'spec'] },
  Job: { groups: ['batch'], path: ['spec', 'template', 'spec'] },
  CronJob: { groups: ['batch'], path: ['spec', 'jobTemplate', 'spec', 'template', 'spec'] },
  PodTemplate: { groups: [''], path: ['template', 'spec'] },
};

export const SUPPORTED_KINDS = Object.keys(POD_SPEC_KINDS);
/** A Map, so that a kind such as `toString` is unknown rather than found on Object.prototype. */
const POD_SPECS = new Map(Object.entries(POD_SPEC_KINDS).map(([kind, k]) => [kind, { ...k, at: k.path.join('.') }]));
const CONTAINER_FIELDS = ['initContainers', 'containers', 'ephemeralContainers'];

/**
 * An object with more images than a review may ask about (MAX_REVIEW_IMAGES). Not malformed, as a
 * Kubernetes object, but not checked either: the review is denied, saying why.
 */
export class TooManyImages extends Error {
  constructor(readonly field: string) {
    super(`${field} has more than ${MAX_REVIEW_IMAGES} images; imagelist checks at most ${MAX_REVIEW_IMAGES} per object`);
  }
}

/** `request.object` or `request.oldObject`: which object of the review is read, for error fields. */
export type ReviewObject = 'request.object' | 'request.oldObject';

export interface GroupKind {
  group: string;
  kind: string;
}

const joinPath = (root: string, path: string) => (path ? `${root}.${path}` : root);

/**
 * Appends the images of `holder[field]` to `into`; admission runs on every pod, hence loops. The
 * field's path (`root.path.field`) is only put together for an error.
 */
function addContainers(into: ContainerImage[], holder: Obj, root: string, path: string, field: string): void {
  const list = listAt(holder, root, path, field);
  // Counted before anything is read from it: a review of 100,000 containers costs no more than this.
  if (into.length + list.length > MAX_REVIEW_IMAGES) throw new TooManyImages(root);
  for (let i = 0; i < list.length; i++) {
    const c: unknown = list[i];
    const image = isObj(c) ? c.image : undefined;
    if (typeof image !== 'string') {
      const at = `${joinPath(root, path)}.${field}[${i}].image`;
      throw badRequest(`${at} must be a string`, [{ field: at, message: 'must be a string' }]);
    }
    const name = (c as Obj).name;
    into.push(new ContainerImage(image, field, i, typeof name === 'string' ? name : undefined));
  }
}

/** `holder[field]` as a list; none is an empty one. */
function listAt(holder: Obj, root: string, path: string, field: string): readonly unknown[] {
  const list = holder[field];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) {
    const at = `${joinPath(root, path)}.${field}`;
    throw badRequest(`${at} must be a list`, [{ field: at, message: 'must be a list' }]);
  }
  return list;
}

/**
 * Appends the references of the pod spec's image volumes (Kubernetes' ImageVolume feature:
 * `volumes[].image.reference`, an OCI image mounted read-only), which the node pulls and
 * mounts as it would run a container's image. Volumes of other types are skipped.
 *
 * In a pod template (`template`) the reference is optional: Kubernetes accepted a workload
 * without one until kubernetes/kubernetes#135989 and leaves the empty field out of the
 * review. Such a volume names no image, and a Pod made from it is refused by the API server's own
 * validation before any webhook sees it; denying the workload as malformed left it impossible to
 * fix by an UPDATE, to scale down, or to delete in the foreground (the finalizer's removal denied).
 */
function addImageVolumes(into: ContainerImage[], spec: Obj, root: string, path: string, template: boolean): void {
  const volumes = listAt(spec, root, path, 'volumes');
  for (let i = 0; i < volumes.length; i++) {
    const volume: unknown = volumes[i];
    const source = isObj(volume) ? volume.image : undefined;
    if (source === undefined || source === null) continue;
    const reference = isObj(source) ? source.reference : undefined;
    if (template && isObj(source) && (reference === undefined || reference === null || reference === '')) continue;
    if (typeof reference !== 'string') {
      const at = `${joinPath(root, path)}.volumes[${i}].image.reference`;
      throw badRequest(`${at} must be a string`, [{ field: at, message: 'must be a string' }]);
    }
    if (into.length === MAX_REVIEW_IMAGES) throw new TooManyImages(root);
    const name = (volume as Obj).name;
    into.push(new ContainerImage(reference, 'volumes', i, typeof name === 'string' ? name : undefined));
  }
}

/** `Kind` for the core group, `Kind.group` otherwise, as Kubernetes writes a group kind. */
export const kindName = ({ group, kind }: GroupKind) => (group ? `${kind}.${group}` : kind);

/**
 * Every image a workload object would run: initContainers, containers and ephemeralContainers of
 * its pod spec, in that order, then its image volumes. Undefined for kinds that carry no pod spec
 * (or not in that group). A pod spec without containers is malformed (Kubernetes requires one):
 * 400, never "nothing to check". More than MAX_REVIEW_IMAGES: TooManyImages.
 */
export function podImages(kind: GroupKind, object: unknown, root: ReviewObject = 'request.object'): ContainerImage[] | undefined {
  if (!isObj(object)) throw badRequest(`${root} must be an object`, [{ field: root, message: 'must be an object' }]);
  const images: ContainerImage[] = [];
  // The pods/ephemeralcontainers subresource before Kubernetes 1.22 sent an EphemeralContainers
  // object: the Pod's whole list, which an update adds to. Its oldObject may have none yet.
  if (kind.kind === 'EphemeralContainers' && kind.group === '') {
    addContainers(images, object, root, '', 'ephemeralContainers');
    if (images.length === 0 && root === 'request.object') {
      const at = `${root}.ephemeralContainers`;
      throw badRequest(`${at} must list at least one container`, [{ field: at, message: 'must list at least one container' }]);
    }
    return images;
  }
  const podSpec = POD_SPECS.get(kind.kind);
  if (!podSpec || !podSpec.groups.includes(kind.group)) return undefined;
  let spec: unknown = object;
  for (const key of podSpec.path) spec = isObj(spec) ? spec[key] : undefined;
  if (!isObj(spec)) {
    const at = `${root}.${podSpec.at}`;
    throw badRequest(`a ${kind.kind} needs ${at}`, [{ field: at, message: 'is required' }]);
  }
  const containers = spec.containers;
  if (containers === undefined || containers === null || (Array.isArray(containers) && containers.length === 0)) {
    const at = `${root}.${podSpec.at}.containers`;
    throw badRequest(`${at} must list at least one container`, [{ field: at, message: 'must list at least one container' }]);
  }
  for (const field of CONTAINER_FIELDS) addContainers(images, spec, root, podSpec.at, field);
  addImageVolumes(images, spec, root, podSpec.at, kind.kind !== 'Pod');
  return images;
}
