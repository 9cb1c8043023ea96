import { LRUCache } from 'lru-cache';
import { normalizeName, type ImageReference } from '../reference.js';
import type { SortKey } from '../schemas/image.js';
import { formatTimestamp, renderImage, tagsJson } from './image-json.js';
import { column, grown } from './columns.js';
import { TagArena, tagHash } from './tag-arena.js';
import { NameTags, nameTagsBytes } from './name-tags.js';

/** One image as the index takes it in: timestamps as microseconds since the epoch. */
export interface ImageRecord {
  id: string;
  name: string;
  tags: readonly string[];
  createdUs: number;
  updatedUs: number;
}

/**
 * One image as the database hands it to the index (image-sql.ts `loadPage`, `byIds`): its tags
 * already as the inside of their JSON array, `"v1","latest"`. Decoding a text[] and joining it
 * again took a fifth of loading the index.
 */
export interface IndexRow {
  id: string;
  name: string;
  tagsJson: string;
  createdUs: number;
  updatedUs: number;
}

export interface ImageIndexOptions {
  /** Images to make room for at once (the table's row count when loading). */
  capacity?: number;
  /** Memory for rendered answers (bytes), split between answers by id and by name; 0 turns caching off. */
  answerCacheBytes?: number;
}

const EMPTY = -1;
const WORDS = 8; // a sha256 digest as 8 × 32 bits
/**
 * Heap bytes a name costs beyond its characters: its entries in `names`, `nameNumbers`,
 * `spellings` (with its array and the normalised string) and the per-name columns. Measured on
 * Node 20 at 100,000 distinct names of 28 to 223 characters: 305-312 bytes plus the characters.
 */
const NAME_OVERHEAD = 320;
const HEX_RE = /^[a-f0-9]{64}$/;
/**
 * A name with more images than this has its tags looked up in a hash table (NameTags), built on
 * its first lookup and kept up to date as its images change. Scanning every image's tags took
 * ~14 ms per review of a tag that a 100,000-image name does not have, and reviews need no login:
 * distinct tags kept the event loop busy. Rebuilding the table (~120 ms at 100,000 images) after
 * each write to its name would cost more than the scan, for a name CI writes to on every build.
 */
const TAG_TABLE_FROM = 1000;
/** Bytes those tables hold in all (24-40 per tag); a name whose table would take more (~1,000,000 tags) is scanned. */
const TAG_TABLE_BYTES = 32 * 1024 * 1024;
/** The mark of a name too large for a table. */
const SCAN = 'scan';

/**
 * The whole allowlist in memory, compactly, with no I/O of its own (live-index.ts keeps it current).
 *
 * At a million images a JavaScript object or string per image would not fit a small pod, so
 * images live in columns indexed by a slot number: the digest as 32 bytes, both timestamps as
 * float64 microseconds (exact below 2^53), the name as an interned name number, and the tags as
 * their JSON text in a byte arena (tag-arena.ts; ready to send and to search for `"tag"`). A digest finds its
 * slot through an open-addressing hash table; the slots of one name form a doubly linked list.
 * Answers are rendered on demand, and the hot ones are cached until their image changes.
 */
export class ImageIndex {
  private capacity = 0;
  private digests = column(Uint32Array, 0, WORDS);
  private created = column(Float64Array, 0);
  private updated = column(Float64Array, 0);
  /** The slot's name number, or EMPTY for a free slot. */
  private nameOf = column(Int32Array, 0);
  private nextOfName = column(Int32Array, 0);
  private prevOfName = column(Int32Array, 0);
  private readonly tags = new TagArena();
  private freeSlots: number[] = [];
  private used = 0;
  /** During a full reload: which slots the reload has seen (put) so far. */
  private seen: Uint8Array | undefined;

  /** Open addressing with linear probing: slot numbers, EMPTY where free. */
  private table = new Int32Array(0);
  private mask = 0;

  private names: string[] = [];
  private nameNumbers = new Map<string, number>();
  private firstOfName: number[] = [];
  private countOfName: number[] = [];
  private freeNames: number[] = [];
  /** Estimated heap bytes of the names held (NAME_OVERHEAD). */
  private nameBytes = 0;
  /** Name numbers by normalised name: `nginx` and `docker.io/library/nginx` are one image name. */
  private spellings = new Map<string, number[]>();

  private readonly scratch = new Uint32Array(WORDS);
  private readonly scratchBytes = Buffer.from(this.scratch.buffer);
  private readonly byId: LRUCache<number, string> | undefined;
  private readonly byName: LRUCache<string, Buffer> | undefined;
  /** By name number, for names of more than TAG_TABLE_FROM images. */
  private readonly tagTables = new LRUCache<number, NameTags | typeof SCAN>({
    maxSize: TAG_TABLE_BYTES,
    sizeCalculation: (t) => (t === SCAN ? 1 : t.bytes),
  });

  /** Bumped by every change, so what is derived from the index knows it is old. */
  generation = 0;
  /** The last whole-table order `ordered` sorted, while the index has not changed since. */
  private lastOrder: { sort: SortKey; generation: number; slots: Int32Array } | undefined;

  constructor(opts: ImageIndexOptions = {}) {
    const cacheBytes = opts.answerCacheBytes ?? 16 * 1024 * 1024;
    if (cacheBytes > 0) {
      this.byId = new LRUCache({ maxSize: cacheBytes / 4, sizeCalculation: (json) => json.length + 64 });
      this.byName = new LRUCache({
        maxSize: (cacheBytes * 3) / 4,
        maxEntrySize: cacheBytes / 16,
        sizeCalculation: (json) => json.length + 64,
      });
    }
    this.grow(Math.max(opts.capacity ?? 0, 1024));
  }

  get size(): number {
    return this.used;
  }

  /**
   * What the index holds, estimated in bytes: `heap`, its names (JavaScript strings and the maps
   * that find them), and `outside`, its columns and tags (typed arrays, outside the JavaScript
   * heap), counted for the images held rather than the room made for more. Without the answer
   * cache, which is bounded on its own.
   */
  memory(): { heap: number; outside: number } {
    const columns =
      this.digests.byteLength +
      this.created.byteLength +
      this.updated.byteLength +
      this.nameOf.byteLength +
      this.nextOfName.byteLength +
      this.prevOfName.byteLength +
      this.table.byteLength +
      this.tags.columnBytes;
    return { heap: this.nameBytes, outside: Math.ceil((columns * this.used) / this.capacity) + this.tags.liveBytes };
  }

  /** Adds the image, or replaces what the index holds for its id. */
  put(image: ImageRecord): void {
    this.putRow({ id: image.id, name: image.name, tagsJson: tagsJson(image.tags), createdUs: image.createdUs, updatedUs: image.updatedUs });
  }

  /** put, from a row whose tags are already JSON. */
  putRow(image: IndexRow): void {
    const digest = this.toScratch(image.id);
    let slot = this.find(digest);
    const nameNo = this.nameNumber(image.name);
    if (slot === EMPTY) {
      if (this.used + 1 > this.capacity * 0.9) this.grow(Math.ceil(this.capacity * 1.5));
      slot = this.freeSlots.pop() ?? this.used;
      this.digests.set(digest, slot * WORDS);
      this.insertIntoTable(slot);
      this.used++;
      this.link(slot, nameNo);
    } else {
      const oldName = this.nameOf[slot]!;
      if (oldName !== nameNo) {
        this.unlink(slot);
        this.link(slot, nameNo);
      }
      this.forgetAnswers(slot, oldName);
    }
    this.created[slot] = image.createdUs;
    this.updated[slot] = image.updatedUs;
    this.tags.set(slot, image.tagsJson);
    this.forgetAnswers(slot, nameNo);
    this.addToTagTable(slot, nameNo);
    if (this.seen) this.seen[slot] = 1;
    this.generation++;
  }

  /** Starts a full reload: images not put again before endSweep() are then removed. */
  beginSweep(): void {
    this.seen = new Uint8Array(this.capacity);
  }

  /** Removes the images the reload did not see; returns how many. */
  endSweep(): number {
    const seen = this.seen;
    this.seen = undefined;
    if (!seen) return 0;
    let gone = 0;
    for (let slot = 0; slot < this.capacity; slot++) {
      if (this.nameOf[slot] !== EMPTY && seen[slot] !== 1) {
        this.removeSlot(slot);
        gone++;
      }
    }
    return gone;
  }

  /** Keeps the image, if held, through the reload under way as it is, as if put again. */
  keepInSweep(id: string): void {
    if (this.seen === undefined || !HEX_RE.test(id)) return;
    const slot = this.find(this.toScratch(id));
    if (slot !== EMPTY) this.seen[slot] = 1;
  }

  abortSweep(): void {
    this.seen = undefined;
  }

  /** Whether the full reload under way has put the image yet. */
  sweptIn(id: string): boolean {
    if (this.seen === undefined || !HEX_RE.test(id)) return false;
    const slot = this.find(this.toScratch(id));
    return slot !== EMPTY && this.seen[slot] === 1;
  }

  /** Forgets the image; false when the index did not hold it. */
  remove(id: string): boolean {
    if (!HEX_RE.test(id)) return false;
    const slot = this.find(this.toScratch(id));
    if (slot === EMPTY) return false;
    this.removeSlot(slot);
    return true;
  }

  private removeSlot(slot: number): void {
    this.forgetAnswers(slot, this.nameOf[slot]!);
    this.deleteFromTable(slot);
    this.unlink(slot);
    this.tags.clear(slot);
    this.freeSlots.push(slot);
    this.used--;
    this.generation++;
  }

  has(id: string): boolean {
    return HEX_RE.test(id) && this.find(this.toScratch(id)) !== EMPTY;
  }

  /** The image's wire JSON and its name, or undefined. */
  get(id: string): { json: string; name: string } | undefined {
    if (!HEX_RE.test(id)) return undefined;
    const slot = this.find(this.toScratch(id));
    if (slot === EMPTY) return undefined;
    const name = this.names[this.nameOf[slot]!]!;
    let json = this.byId?.get(slot);
    if (json === undefined) {
      json = this.render(slot);
      this.byId?.set(slot, json);
    }
    return { json, name };
  }

  /** How many images have exactly this name. */
  countOf(name: string): number {
    const nameNo = this.nameNumbers.get(name);
    return nameNo === undefined ? 0 : this.countOfName[nameNo]!;
  }

  /** Images of exactly this name as a JSON array, in the order of `sort`. */
  namedJson(name: string, sort: SortKey): Buffer {
    const key = `${sort} ${name}`;
    const cached = this.byName?.get(key);
    if (cached !== undefined) return cached;
    const answer = Buffer.from(`[${Array.from(this.namedSlots(name, sort), (slot) => this.render(slot)).join(',')}]`);
    this.byName?.set(key, answer);
    return answer;
  }

  /**
   * The slots of every image (or of one name) in the order of `sort`, for lists answered from
   * memory during a database outage; `cursorOf` and `json` read them one at a time, so a list is
   * rendered as it is sent. Names sort by code point, as the database's `COLLATE "C"` column does
   * (migration 004), so a cursor from either answer continues in the other.
   * The last whole-table order is kept until the index changes: sorting a million slots takes
   * about a second, which every client listing during the outage would pay again.
   */
  ordered(sort: SortKey, name?: string): ArrayLike<number> {
    if (name !== undefined) return this.namedSlots(name, sort);
    const last = this.lastOrder;
    if (last?.sort === sort && last.generation === this.generation) return last.slots;
    const slots = new Int32Array(this.used);
    let n = 0;
    for (let slot = 0; slot < this.capacity; slot++) if (this.nameOf[slot] !== EMPTY) slots[n++] = slot;
    slots.sort(this.descending(sort));
    this.lastOrder = { sort, generation: this.generation, slots };
    return slots;
  }

  /** Where a slot of `ordered` stands in the order of `sort`: its sort value (wire form) and id; undefined once freed. */
  cursorOf(slot: number, sort: SortKey): [value: string, id: string] | undefined {
    if (slot >= this.capacity || this.nameOf[slot] === EMPTY) return undefined;
    const id = this.hexOf(slot);
    if (sort === 'id') return [id, id];
    if (sort === 'name') return [this.names[this.nameOf[slot]!]!, id];
    return [formatTimestamp((sort === 'created_at' ? this.created : this.updated)[slot]!), id];
  }

  /** The wire JSON of a slot of `ordered`; undefined once freed. */
  json(slot: number): string | undefined {
    return slot >= this.capacity || this.nameOf[slot] === EMPTY ? undefined : this.render(slot);
  }

  /** Whether the normalised reference matches an image: by digest, or by name and tag. */
  allows(ref: ImageReference): boolean {
    if (ref.digest !== undefined) return this.has(ref.digest);
    const { tag = 'latest' } = ref;
    const numbers = this.spellings.get(ref.name);
    if (numbers === undefined) return false;
    const quoted = Buffer.from(`"${tag}"`, 'latin1');
    for (const nameNo of numbers) {
      const table = this.countOfName[nameNo]! > TAG_TABLE_FROM ? this.tagTable(nameNo) : SCAN;
      if (table !== SCAN) {
        // An entry may be stale (the slot retagged, renamed or reused since): each hit is checked.
        const found = table.has(tagHash(tag), (slot) => this.nameOf[slot] === nameNo && this.tags.includes(slot, quoted));
        if (table.worn) this.tagTables.delete(nameNo);
        if (found) return true;
        continue;
      }
      for (let slot = this.firstOfName[nameNo]!; slot !== EMPTY; slot = this.nextOfName[slot]!) {
        if (this.tags.includes(slot, quoted)) return true;
      }
    }
    return false;
  }

  private tagTable(nameNo: number): NameTags | typeof SCAN {
    const table = this.tagTables.get(nameNo);
    if (table) return table;
    let count = 0;
    for (let slot = this.firstOfName[nameNo]!; slot !== EMPTY; slot = this.nextOfName[slot]!) count += this.tags.count(slot);
    // A name of more tags than the tables may hold is scanned: marked as such, not counted again each time.
    if (nameTagsBytes(count) > TAG_TABLE_BYTES) {
      this.tagTables.set(nameNo, SCAN);
      return SCAN;
    }
    const built = new NameTags(count);
    for (let slot = this.firstOfName[nameNo]!; slot !== EMPTY; slot = this.nextOfName[slot]!) {
      this.tags.eachTagHash(slot, (hash) => built.add(hash, slot));
    }
    this.tagTables.set(nameNo, built);
    return built;
  }

  /** Makes room for `capacity` images at once, so a full load does not grow the columns step by step. */
  reserve(capacity: number): void {
    if (capacity > this.capacity * 0.9) this.grow(Math.ceil(capacity / 0.9));
  }

  private render(slot: number): string {
    return renderImage(this.created[slot]!, this.updated[slot]!, this.hexOf(slot), this.names[this.nameOf[slot]!]!, this.tags.get(slot));
  }

  /** A name's slots in the order of `sort` (descending, ties by id, as the database's ORDER BY). */
  private namedSlots(name: string, sort: SortKey): Int32Array {
    const nameNo = this.nameNumbers.get(name);
    if (nameNo === undefined) return new Int32Array(0);
    const slots = new Int32Array(this.countOfName[nameNo]!);
    let n = 0;
    for (let slot = this.firstOfName[nameNo]!; slot !== EMPTY; slot = this.nextOfName[slot]!) slots[n++] = slot;
    return slots.sort(this.descending(sort));
  }

  /** Descending by the sort key, ties broken by id, as the database's ORDER BY. */
  private descending(sort: SortKey): (a: number, b: number) => number {
    const bytes = new Uint8Array(this.digests.buffer, this.digests.byteOffset, this.digests.byteLength);
    const byId = (a: number, b: number) => {
      for (let i = 0, x = a * WORDS * 4, y = b * WORDS * 4; i < WORDS * 4; i++) {
        if (bytes[x + i] !== bytes[y + i]) return bytes[y + i]! - bytes[x + i]!;
      }
      return 0;
    };
    if (sort === 'id') return byId;
    if (sort === 'name') {
      const { names, nameOf } = this;
      return (a, b) => {
        const x = names[nameOf[a]!]!;
        const y = names[nameOf[b]!]!;
        return x === y ? byId(a, b) : x < y ? 1 : -1;
      };
    }
    const column = sort === 'created_at' ? this.created : this.updated;
    return (a, b) => column[b]! - column[a]! || byId(a, b);
  }

  private hexOf(slot: number): string {
    return Buffer.from(this.digests.buffer, this.digests.byteOffset + slot * WORDS * 4, WORDS * 4).toString('hex');
  }

  /**
   * Adds the slot's tags to its name's table, if it has one; a table that fills up is dropped
   * (built again, larger, on its next lookup). What the slot no longer carries stays behind, stale:
   * lookups check every hit.
   */
  private addToTagTable(slot: number, nameNo: number): void {
    const table = this.tagTables.size > 0 ? this.tagTables.peek(nameNo) : undefined;
    if (table === undefined || table === SCAN) return;
    let full = false;
    this.tags.eachTagHash(slot, (hash) => {
      full ||= !table.add(hash, slot);
    });
    if (full) this.tagTables.delete(nameNo);
  }

  private forgetAnswers(slot: number, nameNo: number): void {
    this.byId?.delete(slot);
    if (this.byName === undefined || this.byName.size === 0) return;
    const name = this.names[nameNo]!;
    for (const sort of ['created_at', 'updated_at', 'name', 'id']) this.byName.delete(`${sort} ${name}`);
  }

  private toScratch(hex: string): Uint32Array {
    this.scratchBytes.write(hex, 'hex');
    return this.scratch;
  }

  /**
   * Ids are any 64 hex digits a writer sends, not necessarily real sha256 output (test data and
   * hostile writers use patterned ids), so every word is mixed in rather than trusting the first.
   */
  private homeOf(digest: Uint32Array, at = 0): number {
    let h = 0x811c9dc5;
    for (let w = 0; w < WORDS; w++) h = Math.imul(h ^ digest[at + w]!, 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    return h & this.mask;
  }

  private find(digest: Uint32Array): number {
    for (let i = this.homeOf(digest); ; i = (i + 1) & this.mask) {
      const slot = this.table[i]!;
      if (slot === EMPTY) return EMPTY;
      if (this.sameDigest(slot, digest)) return slot;
    }
  }

  private sameDigest(slot: number, digest: Uint32Array): boolean {
    const at = slot * WORDS;
    for (let w = 0; w < WORDS; w++) if (this.digests[at + w] !== digest[w]) return false;
    return true;
  }

  private insertIntoTable(slot: number): void {
    let i = this.homeOf(this.digests, slot * WORDS);
    while (this.table[i] !== EMPTY) i = (i + 1) & this.mask;
    this.table[i] = slot;
  }

  /** Backward-shift deletion: linear probing stays correct without tombstones. */
  private deleteFromTable(slot: number): void {
    let hole = this.homeOf(this.digests, slot * WORDS);
    while (this.table[hole] !== slot) hole = (hole + 1) & this.mask;
    for (let i = (hole + 1) & this.mask; this.table[i] !== EMPTY; i = (i + 1) & this.mask) {
      const home = this.homeOf(this.digests, this.table[i]! * WORDS);
      // may the entry at i move back into the hole? only if its home is not in (hole, i]
      if (((i - home) & this.mask) >= ((i - hole) & this.mask)) {
        this.table[hole] = this.table[i]!;
        hole = i;
      }
    }
    this.table[hole] = EMPTY;
  }

  private nameNumber(name: string): number {
    let nameNo = this.nameNumbers.get(name);
    if (nameNo !== undefined) return nameNo;
    nameNo = this.freeNames.pop() ?? this.names.length;
    this.names[nameNo] = name;
    this.nameNumbers.set(name, nameNo);
    this.nameBytes += name.length + NAME_OVERHEAD;
    this.firstOfName[nameNo] = EMPTY;
    this.countOfName[nameNo] = 0;
    const normalized = normalizeName(name);
    const spelled = this.spellings.get(normalized);
    if (spelled) spelled.push(nameNo);
    else this.spellings.set(normalized, [nameNo]);
    return nameNo;
  }

  private link(slot: number, nameNo: number): void {
    const first = this.firstOfName[nameNo]!;
    this.nameOf[slot] = nameNo;
    this.prevOfName[slot] = EMPTY;
    this.nextOfName[slot] = first;
    if (first !== EMPTY) this.prevOfName[first] = slot;
    this.firstOfName[nameNo] = slot;
    this.countOfName[nameNo]!++;
  }

  /** Takes the slot out of its name's list; a name left without images is forgotten. */
  private unlink(slot: number): void {
    const nameNo = this.nameOf[slot]!;
    const prev = this.prevOfName[slot]!;
    const next = this.nextOfName[slot]!;
    if (prev === EMPTY) this.firstOfName[nameNo] = next;
    else this.nextOfName[prev] = next;
    if (next !== EMPTY) this.prevOfName[next] = prev;
    this.nameOf[slot] = EMPTY;
    if (--this.countOfName[nameNo]! > 0) return;
    const name = this.names[nameNo]!;
    this.nameNumbers.delete(name);
    if (this.tagTables.size > 0) this.tagTables.delete(nameNo);
    this.nameBytes -= name.length + NAME_OVERHEAD;
    const normalized = normalizeName(name);
    const spelled = this.spellings.get(normalized)!.filter((n) => n !== nameNo);
    if (spelled.length) this.spellings.set(normalized, spelled);
    else this.spellings.delete(normalized);
    this.freeNames.push(nameNo);
  }

  private grow(capacity: number): void {
    const old = this.capacity;
    this.digests = grown(this.digests, capacity * WORDS);
    this.created = grown(this.created, capacity);
    this.updated = grown(this.updated, capacity);
    this.nameOf = grown(this.nameOf, capacity).fill(EMPTY, old);
    this.nextOfName = grown(this.nextOfName, capacity);
    this.prevOfName = grown(this.prevOfName, capacity);
    if (this.seen) this.seen = grown(this.seen, capacity);
    this.tags.resize(capacity);
    this.capacity = capacity;
    let tableSize = 1024;
    while (tableSize < capacity * 1.4) tableSize *= 2; // load factor at most 0.65 (capacity is 90% used)
    this.table = new Int32Array(tableSize).fill(EMPTY);
    this.mask = tableSize - 1;
    for (let slot = 0; slot < old; slot++) if (this.nameOf[slot] !== EMPTY) this.insertIntoTable(slot);
  }
}
