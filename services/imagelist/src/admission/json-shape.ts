/**
 * Bounds on the shape of a review's JSON, checked before it is parsed. A review needs no login
 * and may be 8 MiB (an UPDATE carries its object twice), and what parsing costs depends on the
 * shape, not only the size: 8 MB of `[[[[…` took V8's JSON.parse 5.9 s, blocking every other
 * request, and a few 8 MB `[{},{},…]` (2.7 million objects each) exhausted the heap. Kubernetes
 * objects nest a few dozen levels (managedFields are the deepest) and hold some thousands of
 * values; these bounds are far above that and far below what hurts.
 */
export const MAX_DEPTH = 128;
export const MAX_VALUES = 250_000;
/** A body this short cannot be shaped to hurt, and is not scanned: most reviews are a few KB. */
export const SCAN_FROM_BYTES = 16 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;

/**
 * Why this JSON text is shaped beyond the bounds, or undefined. Counts nesting and values (each
 * comma and each object or array) outside strings; whether the text is JSON at all is the
 * parser's to say.
 */
export function jsonShapeProblem(text: string): string | undefined {
  let depth = 0;
  let values = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === BACKSLASH) i++;
        else if (s === QUOTE) break;
      }
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > MAX_DEPTH) return `nests deeper than ${MAX_DEPTH} levels`;
      if (++values > MAX_VALUES) return `holds more than ${MAX_VALUES} values`;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) depth--;
    else if (c === COMMA && ++values > MAX_VALUES) return `holds more than ${MAX_VALUES} values`;
  }
  return undefined;
}
