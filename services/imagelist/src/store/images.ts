import { unavailable } from '@platform/http-common';
import { Readable } from 'node:stream';
import type { SortKey } from '../schemas/image.js';
import type { ImageIndex, ImageRecord } from './image-index.js';
import { sortValue, toJson, type Cursor, type ImageSql, type UpsertImage } from './image-sql.js';
import type { LiveIndex } from './live-index.js';
import { isDatabaseUnavailable } from './errors.js';
import { WriteBatcher } from './write-batcher.js';

export type { Cursor, UpsertImage };

export interface ListOptions {
  name?: string | undefined;
  sort: SortKey;
  /** Page size; without it every matching image is answered, as the original did. */
  limit?: number | undefined;
  /** Where the previous page ended (from `Page.next`). */
  after?: Cursor | undefined;
}

export interface Page {
  /** The answer's JSON array: whole, or streamed for a list without `limit`. */
  json: string | Buffer | Readable;
  /** Set when more images follow. */
  next?: Cursor;
}

/** An image found by id: its wire JSON and its name (repodigest lookups compare it). */
export interface Found {
  json: string;
  name: string;
}

/**
 * Rows per query while streaming a list without `limit`: the answer never holds more than this
 * many images, no connection is held while a slow client reads, and rendering one page is a
 * slice of the event loop short enough for admission meanwhile.
 */
const STREAM_PAGE = 500;

/**
 * The most images of one name answered from a cached rendering (~230 KB). A name with more is
 * listed as the whole table is: from the database, streamed a page at a time, in one of the
 * STREAMS slots. Rendered whole on every request (too large to cache), a name of 100,000 images
 * took 0.3-0.9 s of the event loop and ~46 MB per request: 20 requests at once (no login needed)
 * held admission reviews for 6.4 s and took the process to 457 MB resident.
 */
const CACHED_NAME_IMAGES = 1000;

/** A write the database did not confirm: sent or not, it is not known to have been made, or not. */
const WRITE_UNCONFIRMED =
  'The database did not confirm the write (unreachable, or no answer within --db-timeout); it may or may not have been made. PUT and DELETE are idempotent: retry it.';

/**
 * Lists streamed at once, from the database or from memory. Each holds a page of images while its
 * client reads: a client that never reads holds it until the send-stall limit closes its
 * connection, so without a cap a few hundred such clients (no login needed) exhaust the heap.
 * Past it, a list without `limit` is answered 503 with Retry-After.
 */
const STREAMS = 32;

/**
 * The allowlist: writes go to the database (one statement each, so each is atomic); reads come
 * from the live in-memory index when it may answer (live-index.ts), else from the database.
 */
export class ImageStore {
  private readonly batcher: WriteBatcher<UpsertImage, ImageRecord>;
  private streams = 0;

  constructor(
    private readonly images: ImageSql,
    private readonly live?: LiveIndex,
    opts: { maxBatch?: number; maxInFlight?: number } = {},
  ) {
    this.batcher = new WriteBatcher(
      (batch, until) => this.images.upsert(batch, until),
      (image) => image.digest,
      {
        maxBatch: opts.maxBatch ?? 100,
        maxInFlight: opts.maxInFlight ?? 4,
        // A PUT waits no longer than any other request, its turn included.
        deadline: { ms: images.deadlineMs, missed: () => images.missedDeadline() },
      },
    );
  }

  list(opts: ListOptions): Page | Promise<Page> {
    // Lookups of a name of at most CACHED_NAME_IMAGES images are cached answers in memory; any
    // other list is sorted by the database, and rendered from memory only while it is unreachable.
    const cached = this.live !== undefined && !this.live.overLimit && fromCache(this.live.index, opts);
    const list = () =>
      this.read(
        (index) => listFromMemory(index, opts),
        () => this.listFromDatabase(opts),
        { outageOnly: !cached },
      );
    return cached || opts.limit !== undefined ? list() : this.holdingStream(list);
  }

  /**
   * A name's whole list when it is at hand, as `list` answers it: the cached answer in memory.
   * Undefined when `list` would go further (a name of many images, the database).
   */
  cachedList(name: string, sort: SortKey): (Page & { json: string | Buffer }) | undefined {
    const { live } = this;
    if (live === undefined || live.overLimit || !live.answersFromMemory()) return undefined;
    const opts = { name, sort };
    return fromCache(live.index, opts) ? { json: live.index.namedJson(name, sort) } : undefined;
  }

  /** From memory at once; a promise when the database answers. */
  get(digest: string): Found | undefined | Promise<Found | undefined> {
    return this.read(
      (index) => index.get(digest),
      async () => {
        const row = await this.images.byId(digest);
        return row && { json: toJson(row), name: row.name };
      },
    );
  }

  /**
   * Creates the image, or replaces the tags of an existing one (its name stays as first written).
   * Resolves once committed; concurrent PUTs share one statement (write-batcher.ts).
   */
  async upsert(image: UpsertImage): Promise<{ json: string; row: ImageRecord }> {
    const row = await this.written(image.digest, JSON.stringify([image.name, image.tags ?? null]), () => this.batcher.add(image));
    this.live?.wrote(row);
    return { json: toJson(row), row };
  }

  /** Deletes the image. True when a row went; either way it is gone from memory. */
  async delete(digest: string): Promise<boolean> {
    const deleted = await this.written(digest, 'deleted', () => this.images.delete(digest));
    this.live?.deleted(digest);
    return deleted;
  }

  /**
   * Deletes the image if the table holds it under one of `names`, decided by the database: this
   * replica's memory may not hold it yet (written through another replica a moment ago, or out of
   * memory until read back), and a 204 for a DELETE that deleted nothing left it admitted.
   */
  async deleteNamed(digest: string, names: readonly string[]): Promise<boolean> {
    const { deleted, kept } = await this.written(digest, 'deleted', () => this.images.deleteNamed(digest, names));
    // An image kept under another name stays in memory as it is.
    if (kept) this.live?.writeFailed(digest);
    else this.live?.deleted(digest);
    return deleted;
  }

  async ping(): Promise<void> {
    await this.images.ping();
  }

  /**
   * Runs a list that may be streamed in one of the STREAMS slots, taken before its first query
   * (a burst of lists must not all pass the check before any has started streaming) and freed
   * when its stream closes (sent, failed, or the client gone), or at once when it was answered
   * in one piece or failed.
   */
  private async holdingStream(list: () => Page | Promise<Page>): Promise<Page> {
    if (this.streams >= STREAMS) throw unavailable(`${STREAMS} lists are being sent already; retry, or list in pages with ?limit=.`);
    this.streams++;
    let page: Page | undefined;
    try {
      page = await list();
      return page;
    } finally {
      if (page?.json instanceof Readable) page.json.once('close', () => this.streams--);
      else this.streams--;
    }
  }

  private read<T>(fromMemory: (index: ImageIndex) => T, fromDatabase: () => Promise<T>, opts?: { outageOnly?: boolean }): T | Promise<T> {
    return this.live ? this.live.read(fromMemory, fromDatabase, opts) : fromDatabase();
  }

  /**
   * A write of one image, which would leave it as `outcome` says, told to the live index while it
   * is in flight (LiveIndex.writing); the caller tells it the answer.
   */
  private async written<T>(digest: string, outcome: string, statement: () => Promise<T>): Promise<T> {
    this.live?.assertWritable();
    this.live?.writing(digest, outcome);
    try {
      return await statement();
    } catch (err) {
      this.live?.writeFailed(digest);
      this.live?.noteFailure(err);
      // A statement the database did not answer may still commit: say so, and that a retry is safe.
      if (isDatabaseUnavailable(err)) throw unavailable(WRITE_UNCONFIRMED, err);
      throw err;
    }
  }

  private async listFromDatabase(opts: ListOptions): Promise<Page> {
    const { name, sort } = opts;
    // two list queries at a time, each within the deadline, its wait for a turn included (image-sql.ts)
    const page = (after: Cursor | undefined, limit: number) => this.images.page({ name, sort, after, limit });
    if (opts.limit !== undefined) {
      const rows = await page(opts.after, opts.limit + 1);
      const more = rows.length > opts.limit;
      if (more) rows.length = opts.limit;
      const json = `[${rows.map(toJson).join(',')}]`;
      const last = rows[rows.length - 1];
      return more && last ? { json, next: [sortValue(last, sort), last.id] } : { json };
    }
    // The first page is read before answering, so an unreachable database is a 503, not a cut 200.
    const first = await page(opts.after, STREAM_PAGE);
    if (first.length < STREAM_PAGE) return { json: `[${first.map(toJson).join(',')}]` };
    async function* rest(): AsyncGenerator<string> {
      let rows = first;
      yield `[${rows.map(toJson).join(',')}`;
      while (rows.length === STREAM_PAGE) {
        const last = rows[rows.length - 1]!;
        rows = await page([sortValue(last, sort), last.id], STREAM_PAGE);
        if (rows.length) yield `,${rows.map(toJson).join(',')}`;
      }
      yield ']';
    }
    return { json: Readable.from(rest(), { objectMode: false }) };
  }
}

/** Whether the list is a whole name small enough to answer from its cached rendering (CACHED_NAME_IMAGES). */
function fromCache(index: ImageIndex, opts: ListOptions): opts is ListOptions & { name: string } {
  return opts.name !== undefined && opts.limit === undefined && opts.after === undefined && index.countOf(opts.name) <= CACHED_NAME_IMAGES;
}

/**
 * A list from the in-memory index: lookups of a small name as cached bytes; anything else rendered as it is
 * sent, STREAM_PAGE images at a time, or as one page with `limit`.
 */
function listFromMemory(index: ImageIndex, opts: ListOptions): Page {
  const { sort } = opts;
  if (fromCache(index, opts)) return { json: index.namedJson(opts.name, sort) };
  const slots = index.ordered(sort, opts.name);
  const start = opts.after ? after(index, slots, sort, opts.after) : 0;
  const render = (from: number, to: number) => {
    const json: string[] = [];
    for (let i = from; i < to; i++) {
      const image = index.json(slots[i]!);
      if (image !== undefined) json.push(image);
    }
    return json.join(',');
  };
  if (opts.limit !== undefined) {
    const end = Math.min(slots.length, start + opts.limit);
    const last = end < slots.length ? index.cursorOf(slots[end - 1]!, sort) : undefined;
    return last ? { json: `[${render(start, end)}]`, next: last } : { json: `[${render(start, end)}]` };
  }
  if (slots.length - start <= STREAM_PAGE) return { json: `[${render(start, slots.length)}]` };
  function* pages(): Generator<string> {
    yield '[';
    let comma = false;
    for (let from = start; from < slots.length; from += STREAM_PAGE) {
      const page = render(from, Math.min(slots.length, from + STREAM_PAGE));
      if (page === '') continue;
      yield comma ? `,${page}` : page;
      comma = true;
    }
    yield ']';
  }
  return { json: Readable.from(pages(), { objectMode: false }) };
}

/** Where a list continues after a cursor: the first slot that sorts after it (binary search; the order is descending). */
function after(index: ImageIndex, slots: ArrayLike<number>, sort: SortKey, [value, id]: Cursor): number {
  let lo = 0;
  let hi = slots.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const at = index.cursorOf(slots[mid]!, sort);
    const past = at === undefined || at[0] < value || (at[0] === value && at[1] < id);
    if (past) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
