import type { Sql } from 'postgres';
import type { Image, SortKey } from '../schemas/image.js';
import type { ImageIndex } from './image-index.js';
import { toWire } from './wire-image.js';
import { WriteBatcher } from './write-batcher.js';

export interface UpsertImage {
  digest: string;
  name: string;
  /** undefined/null: leave an existing image's tags alone; [] clears them. */
  tags: string[] | null | undefined;
  /** Name of the token that made the write. */
  by: string | null;
}

export interface ListOptions {
  name?: string | undefined;
  sort: SortKey;
  /** Page size; without it every matching image is answered, as the original did. */
  limit?: number | undefined;
  /** Where the previous page ended (from `Page.next`). */
  after?: Cursor | undefined;
}

/** The sort-key value and id of the last image of a page. */
export type Cursor = [value: string, id: string];

export interface Page {
  /** The page as a JSON array, ready to send. */
  json: string | Buffer;
  /** Set when more images follow. */
  next?: Cursor;
}

/** An image found by id: its wire JSON and its name (repodigest lookups compare it). */
export interface Found {
  json: string;
  name: string;
}

const jsonArray = (parts: string[]) => `[${parts.join(',')}]`;

/** Columns in wire order, timestamps rendered the way the original Go service rendered them. */
export const IMAGE_COLUMNS = `
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at,
  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at,
  id, name, tags`;

/** ORDER BY per sort key; always descending, ties broken by id so the order is total. */
const ORDER: Record<SortKey, string> = {
  created_at: 'created_at DESC, id DESC',
  updated_at: 'updated_at DESC, id DESC',
  name: 'name DESC, id DESC',
  id: 'id DESC',
};

/**
 * The allowlist table. Every write is one statement, so each is atomic on its own. Reads come from
 * the in-memory index while it is fresh, else from the database.
 */
export class ImageStore {
  private readonly batcher: WriteBatcher<UpsertImage, Image>;

  constructor(
    private readonly sql: Sql,
    private readonly index?: ImageIndex,
    opts: { maxBatch?: number; maxInFlight?: number } = {},
  ) {
    this.batcher = new WriteBatcher((images) => this.upsertBatch(images), (image) => image.digest, {
      maxBatch: opts.maxBatch ?? 100,
      maxInFlight: opts.maxInFlight ?? 4,
    });
  }

  async list(opts: ListOptions): Promise<Page> {
    if (opts.name !== undefined && opts.limit === undefined && this.index?.fresh) {
      return { json: this.index.namedJson(opts.name, opts.sort) };
    }
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
    const limit = opts.limit === undefined ? sql`` : sql`LIMIT ${opts.limit + 1}`;
    const images = await sql<Image[]>`
      SELECT ${sql.unsafe(IMAGE_COLUMNS)} FROM images ${where} ORDER BY ${sql.unsafe(ORDER[opts.sort])} ${limit}`;
    const more = opts.limit !== undefined && images.length > opts.limit;
    if (more) images.length = opts.limit!;
    const json = jsonArray(images.map(toWire));
    const last = images[images.length - 1];
    return more && last ? { json, next: [last[opts.sort], last.id] } : { json };
  }

  async get(digest: string): Promise<Found | undefined> {
    if (this.index?.fresh) return this.index.get(digest);
    const rows = await this.sql<Image[]>`SELECT ${this.sql.unsafe(IMAGE_COLUMNS)} FROM images WHERE id = ${digest}`;
    return rows[0] && { json: toWire(rows[0]), name: rows[0].name };
  }

  /**
   * Creates the image, or replaces the tags of an existing one (its name stays as first written).
   * Resolves once committed. Concurrent PUTs are written in batches (write-batcher.ts): one
   * INSERT ... ON CONFLICT per batch, so concurrent PUTs of one id never fail; null tags change
   * nothing and do not bump updated_at.
   */
  async upsert(image: UpsertImage): Promise<Image> {
    const row = await this.batcher.add(image);
    this.index?.put(row); // read-your-writes on this replica, before the notification comes back
    return row;
  }

  private async upsertBatch(images: UpsertImage[]): Promise<Image[]> {
    const input = JSON.stringify(images.map((i) => ({ id: i.digest, name: i.name, tags: i.tags ?? null, by: i.by })));
    const rows = await this.sql<Image[]>`
      WITH x AS (
        SELECT * FROM jsonb_to_recordset(${input}::text::jsonb) AS x(id text, name text, tags text[], by text)
      )
      INSERT INTO images AS i (id, name, tags, created_by, updated_by)
      SELECT id, name, COALESCE(tags, '{}'), by, by FROM x
      ORDER BY id -- concurrent batches lock shared rows in one order, so they cannot deadlock
      ON CONFLICT (id) DO UPDATE SET
        tags       = COALESCE((SELECT x.tags FROM x WHERE x.id = EXCLUDED.id), i.tags),
        updated_at = CASE WHEN (SELECT x.tags FROM x WHERE x.id = EXCLUDED.id) IS NULL THEN i.updated_at ELSE now() END,
        updated_by = CASE WHEN (SELECT x.tags FROM x WHERE x.id = EXCLUDED.id) IS NULL THEN i.updated_by ELSE EXCLUDED.updated_by END
      RETURNING ${this.sql.unsafe(IMAGE_COLUMNS)}`;
    const byId = new Map(rows.map((r) => [r.id, r]));
    return images.map((i) => byId.get(i.digest)!);
  }

  /** Deletes the image; with `name`, only if it has that name. True when a row went. */
  async delete(digest: string, name?: string): Promise<boolean> {
    const and = name === undefined ? this.sql`` : this.sql`AND name = ${name}`;
    const rows = await this.sql`DELETE FROM images WHERE id = ${digest} ${and} RETURNING id`;
    if (rows.length > 0) this.index?.remove(digest);
    return rows.length > 0;
  }

  async ping(): Promise<void> {
    await this.sql`SELECT 1`;
  }
}
