import { describeReference, parseCached } from './parsed-reference.js';
import { isObj, podImages, type ContainerImage, type GroupKind } from './pod-images.js';

export interface WriteRequest {
  kind: GroupKind;
  operation: 'CREATE' | 'UPDATE';
  object?: unknown;
  oldObject?: unknown;
}

/**
 * The images a CREATE or UPDATE asks to run, to be checked against the allowlist; undefined when
 * the kind carries no pod spec we know. A malformed object or oldObject is a 400 (thrown), so a
 * broken review is never admitted for having nothing to check.
 *
 * A CREATE runs every image of `object`. An UPDATE is checked for what it introduces only: most
 * UPDATEs change no image (finalizer removal, a ReplicaSet scaled down during a rollout, label
 * edits), and many are made by Kubernetes itself on objects admitted long ago, whose image may since
 * have been delisted; denying those leaves pods Terminating and rollouts stuck.
 */
export function imagesToCheck(req: WriteRequest): ContainerImage[] | undefined {
  const images = podImages(req.kind, req.object);
  if (images === undefined || req.operation === 'CREATE') return images;
  // The API server always sends oldObject with an UPDATE; without one there is nothing to compare
  // with, so the UPDATE is checked as if it were a CREATE rather than admitted on that ground.
  if (req.oldObject === undefined || req.oldObject === null) return images;
  const oldImages = podImages(req.kind, req.oldObject, 'request.oldObject') ?? [];
  if (beingDeleted(req.oldObject) && beingDeleted(req.object)) return [];
  return introduced(images, oldImages);
}

/**
 * Whether the object is being deleted. Only a DELETE sets `metadata.deletionTimestamp` and no
 * UPDATE can remove or change it, so an oldObject that has it was being deleted before this update;
 * the new object alone is not trusted. Every such UPDATE is admitted, whatever it changes, because
 * nothing new can run from it: the kubelet starts no container (nor an ephemeral one) in a
 * terminating Pod, and the workload controllers (Deployment, ReplicaSet, StatefulSet, DaemonSet,
 * Job, CronJob) create no Pods for an object with a deletionTimestamp. Any Pod that is created
 * anyway is a CREATE, checked in full.
 */
function beingDeleted(object: unknown): boolean {
  const metadata = isObj(object) ? object.metadata : undefined;
  const at = isObj(metadata) ? metadata.deletionTimestamp : undefined;
  return typeof at === 'string' && at !== '';
}

/** The image by what it names (`nginx` is `docker.io/library/nginx:latest`); as written when it does not parse. */
function identity(image: string): string {
  const ref = parseCached(image);
  return ref ? describeReference(ref) : image;
}

/**
 * The images of the new object the old one did not already run, compared as written and by
 * normalised reference. Ephemeral containers are compared by container: each one added is a new
 * container (typically with a debug profile), so it is checked even when the Pod runs its image
 * elsewhere; ephemeral containers cannot be changed or removed, so the old ones are still there.
 */
function introduced(images: readonly ContainerImage[], oldImages: readonly ContainerImage[]): ContainerImage[] {
  const ran = new Set<string>();
  const oldEphemeral = new Set<string>();
  for (const { image, field, name } of oldImages) {
    ran.add(image).add(identity(image));
    if (field === 'ephemeralContainers' && name !== undefined) oldEphemeral.add(`${name}\n${identity(image)}`);
  }
  return images.filter(({ image, field, name }) => {
    if (field === 'ephemeralContainers') return name === undefined || !oldEphemeral.has(`${name}\n${identity(image)}`);
    return !ran.has(image) && !ran.has(identity(image));
  });
}
