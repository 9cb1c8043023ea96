import type { Sql } from 'postgres';
import type { Allowlist } from '../admission/policy.js';
import { nameSpellings, type ImageReference } from '../reference.js';

/** Admission lookups straight against the table: by primary key, or by the name index and tag. */
export class DatabaseAllowlist implements Allowlist {
  constructor(private readonly sql: Sql) {}

  async allows(ref: ImageReference): Promise<boolean> {
    if (ref.digest) {
      const rows = await this.sql`SELECT 1 FROM images WHERE id = ${ref.digest}`;
      return rows.length > 0;
    }
    const rows = await this.sql`
      SELECT 1 FROM images WHERE name = ANY(${nameSpellings(ref.name)}::text[]) AND ${ref.tag!} = ANY(tags) LIMIT 1`;
    return rows.length > 0;
  }
}
