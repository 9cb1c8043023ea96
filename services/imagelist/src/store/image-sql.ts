import { finished } from 'node:stream/promises';
import pLimit, { type LimitFunction } from 'p-limit';
import type { PendingQuery, Row, Sql } from 'postgres';
import { nameSpellings, type ImageReference } from '../reference.js';
import type { SortKey } from '../schemas/image.js';
import type { ImageRecord, IndexRow } from './image-index.js';
import { formatTimestamp, renderImage, tagsJson } from './image-json.js';
import { DatabaseClock, monotonicNow } from './database-clock.js';
import { IndexCopyReader } from './index-copy.js';

/** See ImageSql.lists. */
const LIST_QUERIES = 2;

/**
 * How long before the replica answers a write it must have been made on the server: the server
 * checks the deadline as the write commits (migration 005), and the commit's WAL flush follows.
 */
const COMMIT_MARGIN_MS = 200;

/** The channel migration 002's triggers NOTIFY with each changed id ('*' after a TRUNCATE). */
export const CHANNEL = 'images_changed';

/** The sort-key value (in its wire form) and id of the last image of a page. */
export type Cursor = [value: string, id: string];

export interface UpsertImage {
  digest: string;
  name: string;
  /** undefined/null: leave an existing image's tags alone; [] clears them. */
  tags: string[] | null | undefined;
  /** Name of the token that made the write. */
  by: string | null;
}

/** The timestamps of a row as exact microseconds since the epoch. */
const TIMESTAMP_COLUMNS = `(extract(epoch FROM created_at) * 1000000)::float8 AS "createdUs",
  (extract(epoch FROM updated_at) * 1000000)::float8 AS "updatedUs"`;

/** The server's clock, in milliseconds since the epoch (database-clock.ts). */
export const SERVER_MS = `(extract(epoch FROM clock_timestamp()) * 1000)::float8 AS "serverMs"`;

/**
 * Migration 002's triggers that announce every change, as `<oid>.<xmin><tgenabled>` of each (''
 * once the table is gone), for the change feed: a restore (pg_restore --clean, a dump replayed)
 * drops and recreates the table and loads its rows before the triggers, so nothing is announced,
 * and a table or trigger re-created (a new oid), or disabled and enabled again, even within one
 * transaction (pg_restore --single-transaction --disable-triggers: a new xmin), is seen here.
 */
export const ANNOUNCING = `(SELECT coalesce(string_agg(t.oid::text || '.' || t.xmin::text || t.tgenabled::text, ',' ORDER BY t.oid), '')
  FROM pg_trigger t WHERE t.tgrelid = to_regclass('images') AND t.tgname IN ('images_notify_row', 'images_notify_truncate')) AS "announcing"`;

/** Whether both triggers ANNOUNCING describes are there, each enabled in one of `states` (pg_trigger.tgenabled). */
const bothEnabled = (triggers: string, states: string): boolean =>
  triggers.split(',').filter((t) => /^\d+\.\d+[A-Z]$/.test(t) && states.includes(t.at(-1)!)).length === 2;

/** Whether the triggers fire in ordinary sessions (O: on origin, A: always). */
export const announces = (triggers: string): boolean => bothEnabled(triggers, 'OA');

/** Whether both triggers fire ALWAYS (migration 006), also in sessions with session_replication_role = replica. */
export const alwaysOn = (triggers: string): boolean => bothEnabled(triggers, 'A');

/** Columns of an ImageRecord. */
const RECORD_COLUMNS = `id, name, tags, ${TIMESTAMP_COLUMNS}`;

/** ORDER BY per sort key; always descending, ties broken by id so the order is total. */
const ORDER: Record<SortKey, string> = {
  created_at: 'created_at DESC, id DESC',
  updated_at: 'updated_at DESC, id DESC',
  name: 'name DESC, id DESC',
  id: 'id DESC',
};

/**
 * Columns of an IndexRow: the tags as the inside of their JSON array, which needs no escaping
 * (tags are printable ASCII without `"` or a backslash: migration 003).
 */
const TAGS_JSON = `CASE WHEN cardinality(tags) > 0 THEN '"' || array_to_string(tags, '","') || '"' ELSE '' END`;
const INDEX_COLUMNS = `id, name, ${TAGS_JSON} AS "tagsJson", ${TIMESTAMP_COLUMNS}`;
/** The index's columns as IndexCopyReader reads them: the timestamps as they are stored. */
const INDEX_COPY_COLUMNS = `id, name, ${TAGS_JSON}, created_at, updated_at`;
/** An id after which a page starts: none (''), or an image's. */
const AFTER_ID = /^(?:[a-f0-9]{64})?$/;

export const toJson = (r: ImageRecord): string => renderImage(r.createdUs, r.updatedUs, r.id, r.name, tagsJson(r.tags));

/** The value an image sorts by, as a cursor carries it (timestamps in their wire form). */
export function sortValue(r: ImageRecord, sort: SortKey): string {
  if (sort === 'name') return r.name;
  if (sort === 'id') return r.id;
  return formatTimestamp(sort === 'created_at' ? r.createdUs : r.updatedUs);
}

/**
 * Every statement imagelist runs against the images table. Each is bounded on the client side by
 * `deadlineMs` as well as by the server's statement_timeout: a database host that vanished (no
 * RST) would otherwise leave a request waiting for TCP keepalive.
 *
 * Reads that any client can cause without a login (`byId`, `allowedAmong`) take turns: at most
 * half the pool's connections at once, so writes and the index always find one, and a read
 * still waiting for its turn when its deadline passes is never sent. Without that, a burst the
 * database cannot keep up with leaves statements queued in the driver long after their requests
 * were answered 503, and the pool busy with them for minutes.
 */
export class ImageSql {
  private readonly reads: LimitFunction;
  /** Reads of the server's clock, for the deadline a write carries to it (writeDeadline). */
  readonly clock: DatabaseClock;
  /**
   * List queries running at once, whatever the number of clients listing: lists are open to
   * anyone, and must leave the pool's other connections to writes and to lookups the index cannot
   * answer. Taken in turn as `reads` are (inTurn): a list still waiting for its turn when its
   * deadline passes is never sent. Waiting without a deadline, 20 lists during a 20 s table lock
   * were answered one pair per deadline, the last after 19.9 s.
   */
  private readonly lists: LimitFunction = pLimit(LIST_QUERIES);

  constructor(
    readonly sql: Sql,
    readonly deadlineMs: number,
    clock?: DatabaseClock,
  ) {
    this.reads = pLimit(Math.max(1, Math.floor(sql.options.max / 2)));
    this.clock = clock ?? new DatabaseClock();
  }

  /**
   * The deadline, on the server's clock, by which the server must have made a write whose caller
   * is answered at `until` (monotonicNow ms; migration 005), COMMIT_MARGIN_MS before it (a
   * quarter of --db-timeout if that is less: at 0.1 s the margin took all of it, and every write
   * was refused). The clock is read by a ping first unless a heartbeat read it within FRESH_MS.
   */
  private async writeDeadline(until: number): Promise<number | null> {
    if (!this.clock.fresh()) await this.ping(); // before the first heartbeat, or without one (embedded)
    const earliest = this.clock.earliest(until);
    return earliest === undefined ? null : earliest - Math.min(COMMIT_MARGIN_MS, this.deadlineMs / 4);
  }

  /** One page of `GET /images`, `limit` images after `after`, in the order of `sort`. */
  page(opts: { name?: string | undefined; sort: SortKey; after?: Cursor | undefined; limit: number }): Promise<ImageRecord[]> {
    const { sql } = this;
    const conditions = [];
    if (opts.name !== undefined) conditions.push(sql`name = ${opts.name}`);
    if (opts.after) {
      const [value, id] = opts.after;
      if (opts.sort === 'id') conditions.push(sql`id < ${id}`);
      else if (opts.sort === 'name') conditions.push(sql`(name, id) < (${value}, ${id})`);
      // ::text first: typed as timestamptz, postgres.js would send the value through a JS Date and
      // drop the microseconds the cursor carries.
      else conditions.push(sql`(${sql(opts.sort)}, id) < (${value}::text::timestamptz, ${id})`);
    }
    const where = conditions.length ? sql`WHERE ${conditions.reduce((a, b) => sql`${a} AND ${b}`)}` : sql``;
    return this.inTurn(
      () => sql<ImageRecord[]>`
      SELECT ${sql.unsafe(RECORD_COLUMNS)} FROM images ${where} ORDER BY ${sql.unsafe(ORDER[opts.sort])} LIMIT ${opts.limit}`,
      this.lists,
    );
  }

  async byId(digest: string): Promise<ImageRecord | undefined> {
    const rows = await this.inTurn(
      () => this.sql<ImageRecord[]>`SELECT ${this.sql.unsafe(RECORD_COLUMNS)} FROM images WHERE id = ${digest}`,
    );
    return rows[0];
  }

  /** The index's rows of these images (those that exist). */
  byIds(ids: readonly string[]): Promise<IndexRow[]> {
    return this.bounded(
      this.sql<IndexRow[]>`SELECT ${this.sql.unsafe(INDEX_COLUMNS)} FROM images WHERE id = ANY(${ids as string[]}::text[])`,
    );
  }

  /**
   * A page of the whole table in id order, for loading the index without holding it all at once:
   * each row goes to `put` as it arrives (see IndexCopyReader), and none after the page failed or
   * missed the deadline. COPY takes no parameters: `afterId` is checked to be an id and `limit` a
   * count before they are written into the statement.
   */
  async loadPage(afterId: string, limit: number, put: (row: IndexRow) => void): Promise<{ rows: number; lastId: string }> {
    if (!AFTER_ID.test(afterId) || !Number.isSafeInteger(limit) || limit < 1) throw new Error(`no page after '${afterId}' of ${limit}`);
    const reader = new IndexCopyReader(put);
    const copied = async () => {
      const stream = await this.sql
        .unsafe(
          `COPY (SELECT ${INDEX_COPY_COLUMNS} FROM images WHERE id > '${afterId}' ORDER BY id LIMIT ${limit}) TO STDOUT (FORMAT binary)`,
        )
        .readable();
      // Read to the end even after a missed deadline (reader.stop): a stream left unread pauses the driver's socket.
      stream.on('data', (chunk: Buffer) => reader.write(chunk));
      await finished(stream);
      return reader.finish();
    };
    return this.withinDeadline(copied()).catch((err: unknown) => {
      reader.stop();
      throw err;
    });
  }

  /** How many images there are, counting no further than `limit` (the work stays bounded). */
  async countUpTo(limit: number): Promise<number> {
    const [row] = await this.bounded(
      this.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM (SELECT 1 FROM images LIMIT ${limit}) AS first_rows`,
    );
    return row?.n ?? 0;
  }

  /** The planner's row estimate: enough to size the index before loading it. */
  async estimatedCount(): Promise<number> {
    const [row] = await this.bounded(
      this.sql<{ n: number }[]>`SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = 'images'::regclass`,
    );
    return row?.n ?? 0;
  }

  /**
   * One INSERT ... ON CONFLICT for a batch of PUTs (write-batcher.ts): concurrent PUTs of one id
   * never fail; null tags change nothing and do not bump updated_at. A write that misses the
   * deadline answers 503 and may have committed before that answer, never after (`write`): PUT
   * and DELETE are idempotent, so the client's retry is safe, and nothing answered 200 is lost.
   */
  async upsert(images: readonly UpsertImage[], until = monotonicNow() + this.deadlineMs): Promise<ImageRecord[]> {
    const input = JSON.stringify(images.map((i) => ({ id: i.digest, name: i.name, tags: i.tags ?? null, by: i.by })));
    const rows = await this.write(
      until,
      (deadline) => this.sql<ImageRecord[]>`
      WITH x AS (
        SELECT * FROM jsonb_to_recordset(${input}::text::jsonb) AS x(id text, name text, tags text[], by text)
      ), d AS (${this.deadlineSetting(deadline)})
      INSERT INTO images AS i (id, name, tags, created_by, updated_by)
      SELECT id, name, COALESCE(tags, '{}'), by, by FROM x CROSS JOIN d
      ORDER BY id -- concurrent batches lock shared rows in one order, so they cannot deadlock
      ON CONFLICT (id) DO UPDATE SET
        tags       = COALESCE((SELECT x.tags FROM x WHERE x.id = EXCLUDED.id), i.tags),
        -- now() is when this transaction began: one that waited for the row lock behind a later
        -- PUT of the same id would otherwise answer, and keep, an older updated_at than the write
        -- it replaced.
        updated_at = CASE WHEN (SELECT x.tags FROM x WHERE x.id = EXCLUDED.id) IS NULL THEN i.updated_at
                     ELSE GREATEST(now(), i.updated_at + interval '1 microsecond') END,
        updated_by = CASE WHEN (SELECT x.tags FROM x WHERE x.id = EXCLUDED.id) IS NULL THEN i.updated_by ELSE EXCLUDED.updated_by END
      RETURNING ${this.sql.unsafe(RECORD_COLUMNS)}`,
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    return images.map((i) => byId.get(i.digest)!);
  }

  /** Deletes the image. True when a row went. */
  async delete(digest: string): Promise<boolean> {
    const rows = await this.write(
      monotonicNow() + this.deadlineMs,
      (deadline) => this.sql`DELETE FROM images USING (${this.deadlineSetting(deadline)}) AS d WHERE id = ${digest} RETURNING id`,
    );
    return rows.length > 0;
  }

  /**
   * Deletes the image if its name is one of `names` (the spellings of a repodigest's name), in
   * the one statement, as the table holds it now. `kept`: the image is there under another name
   * (read in the statement's snapshot, from before its own delete).
   */
  async deleteNamed(digest: string, names: readonly string[]): Promise<{ deleted: boolean; kept: boolean }> {
    const [row] = await this.write(
      monotonicNow() + this.deadlineMs,
      (deadline) => this.sql<{ deleted: boolean; kept: boolean }[]>`
      WITH gone AS (
        DELETE FROM images USING (${this.deadlineSetting(deadline)}) AS d
        WHERE id = ${digest} AND name = ANY(${names as string[]}::text[]) RETURNING id
      )
      SELECT EXISTS (SELECT 1 FROM gone) AS deleted,
        EXISTS (SELECT 1 FROM images WHERE id = ${digest} AND NOT name = ANY(${names as string[]}::text[])) AS kept`,
    );
    return row ?? { deleted: false, kept: false };
  }

  /**
   * Whether each normalised reference is on the allowlist, by digest or by name (any spelling)
   * and tag: one statement for a whole review, however many images it names.
   */
  async allowedAmong(refs: readonly ImageReference[]): Promise<boolean[]> {
    const ids: string[] = [];
    const idAt: number[] = [];
    const names: string[] = [];
    const tags: string[] = [];
    const nameAt: number[] = [];
    refs.forEach((ref, i) => {
      if (ref.digest !== undefined) {
        ids.push(ref.digest);
        idAt.push(i);
      } else {
        for (const name of nameSpellings(ref.name)) {
          names.push(name);
          tags.push(ref.tag!);
          nameAt.push(i);
        }
      }
    });
    const rows = await this.inTurn(
      () => this.sql<{ i: number }[]>`
        SELECT q.i FROM unnest(${ids}::text[], ${idAt}::int[]) AS q(id, i)
          WHERE EXISTS (SELECT 1 FROM images WHERE images.id = q.id)
        UNION
        SELECT q.i FROM unnest(${names}::text[], ${tags}::text[], ${nameAt}::int[]) AS q(name, tag, i)
          WHERE EXISTS (SELECT 1 FROM images WHERE images.name = q.name AND q.tag = ANY(images.tags))`,
    );
    const allowed = refs.map(() => false);
    for (const { i } of rows) allowed[i] = true;
    return allowed;
  }

  /** A round trip to the server, which also reads its clock (writeDeadline). */
  async ping(): Promise<void> {
    await this.clock.read(() => this.bounded(this.sql<{ serverMs: number }[]>`SELECT ${this.sql.unsafe(SERVER_MS)}`));
  }

  /**
   * A lookup that finds nothing, reading `images` by its primary key as admission's does
   * (lookup-probe.ts). Not held to the deadline here: the caller bounds its wait, and needs to
   * know when the server has answered, however late.
   */
  lookupNothing(): Promise<unknown> {
    return this.sql`SELECT EXISTS (SELECT 1 FROM images WHERE id = '') AS found`.then(whole);
  }

  /**
   * Rejects when the answer takes longer than the deadline, and rejects an answer postgres.js
   * assembled wrongly. Two faults of postgres.js 3.4 (the latest 3.x) would otherwise hand a
   * request another statement's answer, and an admission check an allow it never had:
   * - `query.cancel()` on a statement pipelined behind a busy one skips reading its answer, which
   *   the server still sends, so every later statement on that connection gets the answer of the
   *   one before it. So a late statement is not cancelled: the server's statement_timeout ends it,
   *   and its answer, read and dropped, keeps the connection in step.
   * - after a statement fails part-way through its rows (a statement timeout, say), the next
   *   statement on that connection gets its rows after as many empty slots
   *   (github.com/porsager/postgres/issues/1181). Its length then differs from the row count
   *   the server reported, which is checked here.
   */
  private bounded<T extends readonly Row[]>(query: PendingQuery<T>): Promise<T> {
    return this.withinDeadline(query.then(whole));
  }

  /**
   * A one-row query that sets the write's deadline for its transaction (migration 005 checks it at
   * commit); joined into the write, so that it runs before the write's first row.
   */
  private deadlineSetting(deadline: number | null): PendingQuery<Row[]> {
    return this.sql`SELECT set_config('imagelist.write_deadline', ${deadline === null ? '' : String(deadline)}, true)`;
  }

  /**
   * A write's statement, given its deadline on the server's clock (writeDeadline), answered or
   * rejected by `until`, the clock's first reading included.
   */
  private write<T extends readonly Row[]>(until: number, statement: (deadline: number | null) => PendingQuery<T>): Promise<T> {
    const written = async () => whole(await statement(await this.writeDeadline(until)));
    return this.withinDeadline(written(), until - monotonicNow());
  }

  /** The answer, or CLIENT_DEADLINE once `ms` (`deadlineMs`) have passed; the work itself goes on. */
  private withinDeadline<T>(answer: Promise<T>, ms = this.deadlineMs): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.missedDeadline()), ms);
    });
    return Promise.race([answer, late]).finally(() => clearTimeout(timer));
  }

  /**
   * A read in its turn (see the class), answered or rejected within the deadline, which counts
   * from the call: waiting for a turn uses it up too. A turn lasts as long as its statement runs
   * on the server, past the deadline if need be (a late statement is not cancelled, see
   * `bounded`): ending it at the deadline let the next read in while the late one still held
   * its connection, so a database stalled for longer than the deadline took two more
   * connections each deadline, until writes and the index found none.
   */
  private inTurn<T extends readonly Row[]>(statement: () => PendingQuery<T>, turns: LimitFunction = this.reads): Promise<T> {
    const until = Date.now() + this.deadlineMs;
    const turn = turns(async () => {
      if (until - Date.now() <= 0) throw this.missedDeadline(); // never sent
      const query = statement();
      await query.catch(() => undefined);
      return query.then(whole);
    });
    return this.withinDeadline(turn);
  }

  /** The error of a statement not answered, or not sent, within the deadline. */
  missedDeadline(): Error {
    return Object.assign(new Error(`the database did not answer within ${this.deadlineMs} ms`), { code: 'CLIENT_DEADLINE' });
  }
}

/** The rows, if there are as many as the server said; see `ImageSql.bounded`. */
function whole<T extends readonly Row[]>(rows: T): T {
  const { count } = rows as unknown as { count: number | null };
  if (count !== null && rows.length !== count) {
    throw Object.assign(new Error(`the database driver assembled ${rows.length} rows for ${count}`), { code: 'DRIVER_MISREAD' });
  }
  return rows;
}
