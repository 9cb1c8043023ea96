import { badRequest } from '@platform/http-common';

/** One container's image, and where the container stands in the object when that is known. */
export class ContainerImage {
  constructor(
    readonly image: string,
    /** `containers`, `initContainers` or `ephemeralContainers`; absent for an ImageReview entry. */
    readonly field?: string,
    private readonly index = 0,
    readonly name?: string,
  ) {}

  /** Where it stands, e.g. `initContainers[0] (setup)`; only denials need it, so it is made then. */
  get container(): string | undefined {
    if (this.field === undefined) return undefined;
    return `${this.field}[${this.index}]${this.name === undefined ? '' : ` (${this.name})`}`;
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
  const list = holder[field];
  if (list === undefined || list === null) return;
  if (!Array.isArray(list)) {
    const at = `${joinPath(root, path)}.${field}`;
    throw badRequest(`${at} must be a list`, [{ field: at, message: 'must be a list' }]);
  }
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

/** `Kind` for the core group, `Kind.group` otherwise, as Kubernetes writes a group kind. */
export const kindName = ({ group, kind }: GroupKind) => (group ? `${kind}.${group}` : kind);

/**
 * Every image a workload object would run: initContainers, containers and ephemeralContainers of
 * its pod spec, in that order. Undefined for kinds that carry no pod spec (or not in that group).
 * A pod spec without containers is malformed (Kubernetes requires one): 400, never "nothing to check".
 */
export function podImages(kind: GroupKind, object: unknown, root: ReviewObject = 'request.object'): ContainerImage[] | undefined {
  if (!isObj(object)) throw badRequest(`${root} must be an object`, [{ field: root, message: 'must be an object' }]);
  const images: ContainerImage[] = [];
  // The pods/ephemeralcontainers subresource before Kubernetes 1.22 sent an EphemeralContainers object.
  if (kind.kind === 'EphemeralContainers' && kind.group === '') {
    addContainers(images, object, root, '', 'ephemeralContainers');
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
  return images;
}
