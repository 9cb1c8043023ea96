import { badRequest } from '@platform/http-common';

/** One container's image, and where the container stands in the object. */
export class ContainerImage {
  constructor(
    readonly image: string,
    private readonly field: string,
    private readonly index: number,
    private readonly name?: string,
  ) {}

  /** Where it stands, e.g. `initContainers[0] (setup)`; only denials need it, so it is made then. */
  get container(): string {
    return `${this.field}[${this.index}]${this.name === undefined ? '' : ` (${this.name})`}`;
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Where each workload kind keeps its pod spec. */
const POD_SPEC_PATHS: Record<string, string[]> = {
  Pod: ['spec'],
  Deployment: ['spec', 'template', 'spec'],
  StatefulSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  ReplicaSet: ['spec', 'template', 'spec'],
  ReplicationController: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
  PodTemplate: ['template', 'spec'],
};

export const SUPPORTED_KINDS = Object.keys(POD_SPEC_PATHS);
/** A Map, so that a kind such as `toString` is unknown rather than found on Object.prototype. */
const POD_SPECS = new Map(Object.entries(POD_SPEC_PATHS).map(([kind, path]) => [kind, { path, where: `request.object.${path.join('.')}` }]));
const CONTAINER_FIELDS = ['initContainers', 'containers', 'ephemeralContainers'];

/** Appends the images of `holder[field]` to `into`; admission runs on every pod, hence loops. */
function addContainers(into: ContainerImage[], holder: Obj, where: string, field: string): void {
  const list = holder[field];
  if (list === undefined || list === null) return;
  if (!Array.isArray(list)) {
    const at = `${where}.${field}`;
    throw badRequest(`${at} must be a list`, [{ field: at, message: 'must be a list' }]);
  }
  for (let i = 0; i < list.length; i++) {
    const c: unknown = list[i];
    const image = isObj(c) ? c.image : undefined;
    if (typeof image !== 'string') {
      const at = `${where}.${field}[${i}].image`;
      throw badRequest(`${at} must be a string`, [{ field: at, message: 'must be a string' }]);
    }
    const name = (c as Obj).name;
    into.push(new ContainerImage(image, field, i, typeof name === 'string' ? name : undefined));
  }
}

/**
 * Every image a workload object would run: initContainers, containers and ephemeralContainers of
 * its pod spec, in that order. Undefined for kinds that carry no pod spec.
 */
export function podImages(kind: string, object: unknown): ContainerImage[] | undefined {
  if (!isObj(object)) throw badRequest('request.object must be an object', [{ field: 'request.object', message: 'must be an object' }]);
  const images: ContainerImage[] = [];
  // The pods/ephemeralcontainers subresource before Kubernetes 1.22 sent an EphemeralContainers object.
  if (kind === 'EphemeralContainers') {
    addContainers(images, object, 'request.object', 'ephemeralContainers');
    return images;
  }
  const podSpec = POD_SPECS.get(kind);
  if (!podSpec) return undefined;
  const { path, where } = podSpec;
  let spec: unknown = object;
  for (const key of path) spec = isObj(spec) ? spec[key] : undefined;
  if (!isObj(spec)) throw badRequest(`a ${kind} needs ${where}`, [{ field: where, message: 'is required' }]);
  for (const field of CONTAINER_FIELDS) addContainers(images, spec, where, field);
  return images;
}
