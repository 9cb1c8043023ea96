import type { Sql } from 'postgres';
import type { Image, SortKey } from '../schemas/image.js';

export interface UpsertImage {
  digest: string;
  name: string;
  /** undefined/null: leave an existing image's tags alone; [] clears them. */
  tags: string[] | null | undefined;
  /** Name of the token that made the write. */
  by: string | null;
}

/** Columns in wire order, timestamps rendered the way the original Go service rendered them. */
const COLUMNS = `
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

/** The allowlist table. Every method is one statement, so each is atomic on its own. */
export class ImageStore {
  constructor(private readonly sql: Sql) {}

  list(opts: { name?: string | undefined; sort: SortKey }): Promise<Image[]> {
    const { sql } = this;
    const where = opts.name === undefined ? sql`` : sql`WHERE name = ${opts.name}`;
    return sql<Image[]>`SELECT ${sql.unsafe(COLUMNS)} FROM images ${where} ORDER BY ${sql.unsafe(ORDER[opts.sort])}`;
  }

  async get(digest: string): Promise<Image | undefined> {
    const rows = await this.sql<Image[]>`SELECT ${this.sql.unsafe(COLUMNS)} FROM images WHERE id = ${digest}`;
    return rows[0];
  }

  /**
   * Creates the image, or replaces the tags of an existing one (its name stays as first written).
   * A single INSERT ... ON CONFLICT, so concurrent PUTs of one id never fail; null tags change
   * nothing and do not bump updated_at.
   */
  async upsert(image: UpsertImage): Promise<Image> {
    const tags = image.tags ?? null;
    const rows = await this.sql<Image[]>`
      INSERT INTO images AS i (id, name, tags, created_by, updated_by)
      VALUES (${image.digest}, ${image.name}, COALESCE(${tags}::text[], '{}'), ${image.by}, ${image.by})
      ON CONFLICT (id) DO UPDATE SET
        tags       = COALESCE(${tags}::text[], i.tags),
        updated_at = CASE WHEN ${tags}::text[] IS NULL THEN i.updated_at ELSE now() END,
        updated_by = CASE WHEN ${tags}::text[] IS NULL THEN i.updated_by ELSE EXCLUDED.updated_by END
      RETURNING ${this.sql.unsafe(COLUMNS)}`;
    return rows[0]!;
  }

  /** Deletes the image; with `name`, only if it has that name. True when a row went. */
  async delete(digest: string, name?: string): Promise<boolean> {
    const and = name === undefined ? this.sql`` : this.sql`AND name = ${name}`;
    const rows = await this.sql`DELETE FROM images WHERE id = ${digest} ${and} RETURNING id`;
    return rows.length > 0;
  }

  async ping(): Promise<void> {
    await this.sql`SELECT 1`;
  }
}
