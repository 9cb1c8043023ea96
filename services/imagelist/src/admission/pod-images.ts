import { badRequest } from '@platform/http-common';

export interface ContainerImage {
  /** Where it stands, e.g. `initContainers[0] (setup)`. */
  container: string;
  image: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Where each workload kind keeps its pod spec. */
const POD_SPEC_PATH: Record<string, string[]> = {
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

export const SUPPORTED_KINDS = Object.keys(POD_SPEC_PATH);

function containersOf(holder: Obj, where: string, field: string): ContainerImage[] {
  const list = holder[field];
  if (list === undefined || list === null) return [];
  const at = `${where}.${field}`;
  if (!Array.isArray(list)) throw badRequest(`${at} must be a list`, [{ field: at, message: 'must be a list' }]);
  return list.map((c, i) => {
    const image = isObj(c) ? c.image : undefined;
    if (typeof image !== 'string') {
      throw badRequest(`${at}[${i}].image must be a string`, [{ field: `${at}[${i}].image`, message: 'must be a string' }]);
    }
    const name = isObj(c) && typeof c.name === 'string' ? ` (${c.name})` : '';
    return { container: `${field}[${i}]${name}`, image };
  });
}

/**
 * Every image a workload object would run: containers, initContainers and ephemeralContainers of
 * its pod spec. Undefined for kinds that carry no pod spec.
 */
export function podImages(kind: string, object: unknown): ContainerImage[] | undefined {
  if (!isObj(object)) throw badRequest('request.object must be an object', [{ field: 'request.object', message: 'must be an object' }]);
  // The pods/ephemeralcontainers subresource before Kubernetes 1.22 sent an EphemeralContainers object.
  if (kind === 'EphemeralContainers') return containersOf(object, 'request.object', 'ephemeralContainers');
  const path = POD_SPEC_PATH[kind];
  if (!path) return undefined;
  let spec: unknown = object;
  for (const key of path) spec = isObj(spec) ? spec[key] : undefined;
  const where = `request.object.${path.join('.')}`;
  if (!isObj(spec)) throw badRequest(`a ${kind} needs ${where}`, [{ field: where, message: 'is required' }]);
  return ['initContainers', 'containers', 'ephemeralContainers'].flatMap((field) => containersOf(spec, where, field));
}
