import { Memo } from '../memo.js';
import { parseReference, REFERENCE_MAX_LENGTH, type ImageReference } from '../reference.js';

/** Parsing is pure, and a cluster runs few distinct images: remember up to 10,000 (false: invalid). */
const parsed = new Memo<string, ImageReference | false>(10_000);

/** parseReference, remembered; undefined when the image is not a valid reference. */
export function parseCached(image: string): ImageReference | undefined {
  // Too long to be valid, and not kept: 10,000 long strings would fill the heap.
  if (image.length > REFERENCE_MAX_LENGTH) return undefined;
  let ref = parsed.get(image);
  if (ref === undefined) {
    ref = parseReference(image) ?? false;
    parsed.set(image, ref);
  }
  return ref || undefined;
}

/** The image a reference names: `name@sha256:<hex>` when pinned (the digest wins), else `name:tag`. */
export function describeReference(ref: ImageReference): string {
  return ref.digest ? `${ref.name}@sha256:${ref.digest}` : `${ref.name}:${ref.tag}`;
}
