import type { IndexRow } from './image-index.js';

/**
 * The index's columns in the order `INDEX_COPY_COLUMNS` (image-sql.ts) asks for them: id, name
 * and tags as text, both timestamps as timestamptz.
 */
const FIELDS = 5;
/** PostgreSQL's epoch (2000-01-01) in microseconds since the Unix epoch. */
const PG_EPOCH_US = 946_684_800_000_000;
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
/** The signature, the flags field and the header extension's length. */
const HEADER_BYTES = SIGNATURE.length + 8;

/**
 * Reads the index's rows from the output of `COPY (…) TO STDOUT (FORMAT binary)` as its chunks
 * arrive, and hands each row to `put` at once. Loading a million images through the driver's
 * row objects cost PostgreSQL ~0.4 s of numeric arithmetic for the timestamps, and the process a
 * page of objects that outlived young-generation collections: a mark-compact every ~115 ms of the
 * load. Here the timestamps come as PostgreSQL's own microseconds, and a row lives only while
 * `put` runs (the object passed is reused).
 *
 * Text columns are read as latin1: ids are hex, and names and tags printable ASCII (migrations
 * 001 and 003). Format: https://www.postgresql.org/docs/current/sql-copy.html (Binary Format).
 */
export class IndexCopyReader {
  rows = 0;
  lastId = '';
  private state: 'header' | 'rows' | 'ended' = 'header';
  /** The start of a row (or of the header) that the next chunk completes. */
  private partial: Buffer | undefined;
  private failure: Error | undefined;
  private stopped = false;
  private readonly row: IndexRow = { id: '', name: '', tagsJson: '', createdUs: 0, updatedUs: 0 };

  constructor(private readonly put: (row: IndexRow) => void) {}

  /** The next chunk of the COPY's output. Never throws: a malformed COPY fails `finish`. */
  write(chunk: Buffer): void {
    if (this.stopped || this.failure) return;
    try {
      this.read(chunk);
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(String(err));
    }
  }

  /** Rows that arrive from now on are dropped: whoever asked for them has given up on the page. */
  stop(): void {
    this.stopped = true;
  }

  /** Once the COPY has ended: how many rows it held and the last id, unless it was malformed or cut short. */
  finish(): { rows: number; lastId: string } {
    if (this.failure) throw this.failure;
    if (this.state !== 'ended' || this.partial) throw malformed('it ended before its trailer');
    return { rows: this.rows, lastId: this.lastId };
  }

  private read(chunk: Buffer): void {
    const buf = this.partial ? Buffer.concat([this.partial, chunk]) : chunk;
    this.partial = undefined;
    let at = 0;
    if (this.state === 'header') {
      if (buf.length < HEADER_BYTES) return this.keep(buf, 0);
      if (!buf.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw malformed('it has no binary COPY signature');
      at = HEADER_BYTES + buf.readUInt32BE(SIGNATURE.length + 4);
      if (buf.length < at) return this.keep(buf, 0);
      this.state = 'rows';
    }
    while (at < buf.length) {
      if (this.state === 'ended') throw malformed('it goes on after its trailer');
      const end = rowEnd(buf, at);
      if (end === -1) return this.keep(buf, at);
      if (end === at + 2) this.state = 'ended';
      else this.readRow(buf, at + 2);
      at = end;
    }
  }

  /** Copied, so that the driver's socket buffer is not held. */
  private keep(buf: Buffer, from: number): void {
    this.partial = Buffer.from(buf.subarray(from));
  }

  /** The row's fields, each a length (int32) and its bytes; `at` is past the field count. */
  private readRow(buf: Buffer, at: number): void {
    const row = this.row;
    let n = buf.readInt32BE(at);
    row.id = text(buf, at + 4, n);
    at += 4 + n;
    n = buf.readInt32BE(at);
    row.name = text(buf, at + 4, n);
    at += 4 + n;
    n = buf.readInt32BE(at);
    row.tagsJson = text(buf, at + 4, n);
    at += 4 + n;
    row.createdUs = microseconds(buf, at);
    row.updatedUs = microseconds(buf, at + 12);
    this.put(row);
    this.rows++;
    this.lastId = row.id;
  }
}

/** Where the row (or the trailer) starting at `at` ends, or -1 if the buffer holds only its start. */
function rowEnd(buf: Buffer, at: number): number {
  if (buf.length < at + 2) return -1;
  const fields = buf.readInt16BE(at);
  if (fields === -1) return at + 2; // the trailer
  if (fields !== FIELDS) throw malformed(`a row has ${fields} fields, not ${FIELDS}`);
  at += 2;
  for (let f = 0; f < FIELDS; f++) {
    if (buf.length < at + 4) return -1;
    const n = buf.readInt32BE(at);
    if (n < 0) throw malformed('a column is null');
    at += 4 + n;
  }
  return buf.length < at ? -1 : at;
}

function text(buf: Buffer, at: number, n: number): string {
  return buf.toString('latin1', at, at + n);
}

/** A timestamptz field (length 8, then microseconds since 2000-01-01) as microseconds since 1970. */
function microseconds(buf: Buffer, at: number): number {
  if (buf.readInt32BE(at) !== 8) throw malformed('a timestamp is not 8 bytes');
  // Two halves rather than readBigInt64BE: no BigInt per value, and exact below 2^53 µs (year 2255).
  return buf.readInt32BE(at + 4) * 2 ** 32 + buf.readUInt32BE(at + 8) + PG_EPOCH_US;
}

function malformed(why: string): Error {
  return Object.assign(new Error(`the index's COPY from the database is malformed: ${why}`), { code: 'COPY_MALFORMED' });
}
