/** No entry, no key. */
const NONE = -1;

/** A hit that fails its check more often than this in one lookup marks the table worn (rebuild it). */
const STALE_HITS = 64;

/**
 * One name's tags: each tag's hash (tag-arena.ts's tagHash) to the slots that carried it when
 * they were added, newest first. A key per distinct hash (open addressing, linear probing) heads a
 * chain of entries, so a tag that thousands of the name's images carry (`main`, `stable`) is one
 * key, not a cluster that every probe near it walks.
 *
 * Entries are only added: one whose slot was retagged, renamed or reused since stays behind, so
 * `has` checks every hit (which also makes a hash collision harmless). A lookup that passed many
 * such entries marks the table `worn`, and one that runs out of room refuses the entry: either
 * way the owner builds it again.
 */
export class NameTags {
  /** Bytes held, for the owner's budget. */
  readonly bytes: number;
  /** Set by a lookup that passed more than STALE_HITS entries that failed their check. */
  worn = false;
  private readonly heads: Int32Array;
  private readonly keyHashes: Uint32Array;
  private readonly mask: number;
  private readonly slotOf: Int32Array;
  private readonly next: Int32Array;
  private used = 0;

  /** Room for `count` entries, and half as many again for the name's later writes. */
  constructor(count: number) {
    const { size, entries, bytes } = layout(count);
    this.heads = new Int32Array(size).fill(NONE);
    this.keyHashes = new Uint32Array(size);
    this.mask = size - 1;
    this.slotOf = new Int32Array(entries);
    this.next = new Int32Array(entries);
    this.bytes = bytes;
  }

  /** Records that `slot` carries the tag of `hash`; false, recording nothing, once the table is full. */
  add(hash: number, slot: number): boolean {
    if (this.used === this.slotOf.length) return false;
    let i = hash & this.mask;
    while (this.heads[i] !== NONE && this.keyHashes[i] !== hash) i = (i + 1) & this.mask;
    // a free key is always found: keys <= entries <= three quarters of the keys' size (layout)
    if (this.heads[i] === NONE) this.keyHashes[i] = hash;
    const entry = this.used++;
    this.slotOf[entry] = slot;
    this.next[entry] = this.heads[i]!;
    this.heads[i] = entry;
    return true;
  }

  /** Whether a slot recorded under the tag's hash `carries` it now. */
  has(hash: number, carries: (slot: number) => boolean): boolean {
    let i = hash & this.mask;
    while (this.heads[i] !== NONE && this.keyHashes[i] !== hash) i = (i + 1) & this.mask;
    let stale = 0;
    for (let entry = this.heads[i]!; entry !== NONE; entry = this.next[entry]!) {
      if (carries(this.slotOf[entry]!)) return true;
      if (++stale > STALE_HITS) this.worn = true;
    }
    return false;
  }
}

/** Bytes a table for `count` entries holds. */
export const nameTagsBytes = (count: number): number => layout(count).bytes;

/** Keys at most three quarters full even if every entry is a distinct tag; 8 bytes per key and per entry. */
function layout(count: number): { size: number; entries: number; bytes: number } {
  const entries = count + Math.max(1024, count >> 1);
  let size = 16;
  while (size * 0.75 < entries) size *= 2;
  return { size, entries, bytes: size * 8 + entries * 8 };
}
