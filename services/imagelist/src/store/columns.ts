export type Column = Uint32Array | Int32Array | Float64Array | Uint8Array;
type ColumnType<T extends Column> = { new (buffer: ArrayBuffer): T; readonly BYTES_PER_ELEMENT: number };

/**
 * The slots a column reserves address space for. A column grows in place up to this: a
 * resizable ArrayBuffer reserves its maximum as address space only, commits memory as it grows,
 * and the kernel maps a page only once it is written. Growing by copying held the old and the new
 * columns at once, until a major collection freed the old: an index that grew past 1,430,000
 * images while serving took the process to 407 MB resident, past the Deployment's 384 MiB limit,
 * on every replica at once (they all receive the same writes).
 */
const RESERVED_SLOTS = 2 ** 23; // ~8,400,000: five times the default --index-max-images; ~570 MB of address space per index

/** A column of `slots` slots (zero), `perSlot` elements each, that grows in place (`grown`). */
export function column<T extends Column>(type: ColumnType<T>, slots: number, perSlot = 1): T {
  const bytes = slots * perSlot * type.BYTES_PER_ELEMENT;
  const reserved = Math.max(slots, RESERVED_SLOTS) * perSlot * type.BYTES_PER_ELEMENT;
  // A view without a length follows the buffer as it grows.
  return new type(new ArrayBuffer(bytes, { maxByteLength: reserved }));
}

/** The column with room for `length` elements; the new ones are zero. In place while the reservation lasts. */
export function grown<T extends Column>(from: T, length: number): T {
  const buffer = from.buffer as ArrayBuffer;
  const bytes = length * from.BYTES_PER_ELEMENT;
  if (buffer.resizable && bytes <= buffer.maxByteLength) {
    if (bytes > buffer.byteLength) buffer.resize(bytes);
    return from;
  }
  const type = from.constructor as ColumnType<T>;
  const to = new type(new ArrayBuffer(bytes, { maxByteLength: bytes * 2 }));
  to.set(from);
  return to;
}
