import { column, grown } from './columns.js';

/** Bytes per block; an entry's place is its block's number and its offset in 20 bits. */
const BLOCK_BITS = 20;
const BLOCK = 2 ** BLOCK_BITS;
const QUOTE = 0x22;
const EMPTY_BLOCK = Buffer.alloc(0);
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** A tag's hash as eachTagHash gives it: FNV-1a over its characters (tags are ASCII), mixed. */
export function tagHash(tag: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < tag.length; i++) h = Math.imul(h ^ tag.charCodeAt(i), FNV_PRIME);
  return finish(h);
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  return (h ^ (h >>> 13)) >>> 0;
}

/** Block numbers fit the 12 bits above the offset. */
const MAX_BLOCKS = 2 ** (32 - BLOCK_BITS);

/**
 * Each image's tags as their JSON text (`"v1","latest"`), kept as bytes in blocks of 1 MiB rather
 * than as a string per image: at a million images, strings (with their headers and the array that
 * holds them) cost the heap about three times the bytes. Blocks rather than one growing buffer:
 * growing one meant copying it whole, and the old copies stayed resident until a major
 * collection freed them (at a million images, ~20 MB of tags left up to ~40 MB of old copies
 * behind while the index loaded). A replaced or removed entry leaves its old bytes behind; once
 * those outweigh the live ones, the entries are copied into fresh blocks.
 */
export class TagArena {
  private blocks: Buffer[] = [];
  /** Where the next entry goes in the last block. */
  private end = BLOCK;
  private live = 0;
  private garbage = 0;
  /** Per slot: block number << BLOCK_BITS | offset. */
  private place = column(Uint32Array, 0);
  private length = column(Uint32Array, 0);

  /** Bytes of the per-slot columns. */
  get columnBytes(): number {
    return this.place.byteLength + this.length.byteLength;
  }

  /** Bytes of the tags held, without the old ones not yet compacted away. */
  get liveBytes(): number {
    return this.live;
  }

  /** Bytes of replaced and removed entries, held until the next compaction. */
  get garbageBytes(): number {
    return this.garbage;
  }

  /** Makes room for slots below `capacity`. */
  resize(capacity: number): void {
    this.place = grown(this.place, capacity);
    this.length = grown(this.length, capacity);
  }

  set(slot: number, json: string): void {
    // A reload puts every image again, nearly all unchanged: rewriting them would leave the whole
    // arena behind as garbage each time.
    if (this.holds(slot, json)) return;
    this.clear(slot);
    const size = Buffer.byteLength(json, 'latin1');
    if (size === 0) return;
    if (this.garbage > this.live + size && this.garbage > BLOCK) this.compact();
    const at = this.allocate(size);
    this.blocks[at >>> BLOCK_BITS]!.write(json, at & (BLOCK - 1), 'latin1');
    this.place[slot] = at;
    this.length[slot] = size;
    this.live += size;
  }

  clear(slot: number): void {
    const n = this.length[slot]!;
    this.live -= n;
    this.garbage += n;
    this.length[slot] = 0;
  }

  get(slot: number): string {
    const n = this.length[slot]!;
    if (n === 0) return '';
    const at = this.place[slot]!;
    const offset = at & (BLOCK - 1);
    return this.blocks[at >>> BLOCK_BITS]!.toString('latin1', offset, offset + n);
  }

  /**
   * Whether the slot's JSON contains `needle` (a quoted tag). Compared in place: a subarray per
   * slot to search in cost more than the search, on the scan of a name's every image.
   */
  includes(slot: number, needle: Buffer): boolean {
    const at = this.place[slot]!;
    const block = this.blocks[at >>> BLOCK_BITS];
    const from = at & (BLOCK - 1);
    const last = from + this.length[slot]! - needle.length;
    const first = needle[0];
    next: for (let i = from; i <= last; i++) {
      if (block![i] !== first) continue;
      for (let j = 1; j < needle.length; j++) if (block![i + j] !== needle[j]) continue next;
      return true;
    }
    return false;
  }

  private holds(slot: number, json: string): boolean {
    const [block, from, to] = this.span(slot);
    if (to - from !== json.length || json.length === 0) return false;
    for (let i = 0; i < json.length; i++) if (block[from + i] !== json.charCodeAt(i)) return false;
    return true;
  }

  /** How many tags the slot holds. */
  count(slot: number): number {
    const [block, from, to] = this.span(slot);
    let quotes = 0;
    for (let i = from; i < to; i++) if (block[i] === QUOTE) quotes++;
    return quotes / 2;
  }

  /** Calls `each` with the hash (tagHash) of each of the slot's tags, without making strings of them. */
  eachTagHash(slot: number, each: (hash: number) => void): void {
    const [block, from, to] = this.span(slot);
    let h = 0;
    let inside = false;
    for (let i = from; i < to; i++) {
      const c = block[i]!;
      if (c === QUOTE) {
        if (inside) each(finish(h));
        else h = FNV_OFFSET;
        inside = !inside;
      } else if (inside) h = Math.imul(h ^ c, FNV_PRIME);
    }
  }

  /** The slot's bytes: its block, and where in it they start and end. */
  private span(slot: number): [block: Buffer, from: number, to: number] {
    const n = this.length[slot]!;
    if (n === 0) return [EMPTY_BLOCK, 0, 0];
    const at = this.place[slot]!;
    const offset = at & (BLOCK - 1);
    return [this.blocks[at >>> BLOCK_BITS]!, offset, offset + n];
  }

  /** A place for `size` bytes: the rest of the last block, or a new one (of its own size, if larger than a block). */
  private allocate(size: number): number {
    if (this.end + size <= BLOCK) {
      const at = ((this.blocks.length - 1) << BLOCK_BITS) | this.end;
      this.end += size;
      return at >>> 0;
    }
    if (this.blocks.length >= MAX_BLOCKS) throw new RangeError(`the tag arena is full (${MAX_BLOCKS} blocks)`);
    // Not zeroed: only bytes written are ever read.
    this.blocks.push(Buffer.allocUnsafeSlow(Math.max(BLOCK, size)));
    this.end = size > BLOCK ? BLOCK : size; // a block of its own takes no other entry
    return ((this.blocks.length - 1) << BLOCK_BITS) >>> 0;
  }

  /** Copies the live entries into fresh blocks, leaving the old ones to the collector. */
  private compact(): void {
    const old = this.blocks;
    this.blocks = [];
    this.end = BLOCK;
    for (let slot = 0; slot < this.length.length; slot++) {
      const n = this.length[slot]!;
      if (n === 0) continue;
      const from = this.place[slot]!;
      const offset = from & (BLOCK - 1);
      const at = this.allocate(n);
      old[from >>> BLOCK_BITS]!.copy(this.blocks[at >>> BLOCK_BITS]!, at & (BLOCK - 1), offset, offset + n);
      this.place[slot] = at;
    }
    this.garbage = 0;
  }
}
