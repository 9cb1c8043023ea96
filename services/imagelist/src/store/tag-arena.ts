/**
 * Each image's tags as their JSON text (`"v1","latest"`), kept as bytes in one growing buffer
 * rather than as a string per image: at a million images, strings (with their headers and the
 * array that holds them) cost the heap about three times the bytes. A replaced or removed entry
 * leaves its old bytes behind; once those outweigh the live ones, the buffer is compacted.
 */
export class TagArena {
  private bytes = Buffer.alloc(64 * 1024);
  private end = 0;
  private garbage = 0;
  private start = new Uint32Array(0);
  private length = new Uint32Array(0);

  /** Bytes of the per-slot columns. */
  get columnBytes(): number {
    return this.start.byteLength + this.length.byteLength;
  }

  /** Bytes of the tags held, without the old ones not yet compacted away. */
  get liveBytes(): number {
    return this.end - this.garbage;
  }

  /** Makes room for slots below `capacity`. */
  resize(capacity: number): void {
    const start = new Uint32Array(capacity);
    start.set(this.start.subarray(0, Math.min(capacity, this.start.length)));
    const length = new Uint32Array(capacity);
    length.set(this.length.subarray(0, Math.min(capacity, this.length.length)));
    this.start = start;
    this.length = length;
  }

  set(slot: number, json: string): void {
    this.clear(slot);
    const size = Buffer.byteLength(json, 'latin1');
    if (this.end + size > this.bytes.length) this.makeRoom(size);
    this.bytes.write(json, this.end, 'latin1');
    this.start[slot] = this.end;
    this.length[slot] = size;
    this.end += size;
  }

  clear(slot: number): void {
    this.garbage += this.length[slot]!;
    this.length[slot] = 0;
  }

  get(slot: number): string {
    const at = this.start[slot]!;
    return this.bytes.toString('latin1', at, at + this.length[slot]!);
  }

  /** Whether the slot's JSON contains `needle` (a quoted tag). */
  includes(slot: number, needle: Buffer): boolean {
    const at = this.start[slot]!;
    return this.bytes.subarray(at, at + this.length[slot]!).indexOf(needle) >= 0;
  }

  /** Compacts when old bytes outweigh live ones, else grows by half (at least by `size`). */
  private makeRoom(size: number): void {
    const live = this.end - this.garbage;
    const next = Buffer.alloc(Math.max(64 * 1024, Math.ceil((live + size) * (this.garbage > live ? 1.25 : 1.5))));
    let end = 0;
    for (let slot = 0; slot < this.length.length; slot++) {
      const n = this.length[slot]!;
      if (n === 0) continue;
      this.bytes.copy(next, end, this.start[slot], this.start[slot]! + n);
      this.start[slot] = end;
      end += n;
    }
    this.bytes = next;
    this.end = end;
    this.garbage = 0;
  }
}
