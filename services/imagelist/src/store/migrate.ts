import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from 'postgres';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** Arbitrary, fixed key of the advisory lock that serialises migrations across replicas. */
const MIGRATION_LOCK = 727_431_001;
/** How long one migration statement may run: minutes, not the service's 5 s (an index rebuild). */
const MIGRATION_TIMEOUT_S = 600;

interface Migration {
  version: number;
  name: string;
  file: string;
}

async function listMigrations(dir: string): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f)).sort();
  return files.map((file) => ({ version: Number(file.slice(0, 3)), name: file.slice(4, -4), file: path.join(dir, file) }));
}

export interface Migrated {
  /** The versions applied now. */
  applied: number[];
  /**
   * Migrations the database has that this version does not (`005_name`): a newer version
   * migrated it. This one still serves, as a rolling update needs, but should say so.
   */
  unknown: string[];
}

const label = (version: number, name: string) => `${String(version).padStart(3, '0')}_${name}`;

/**
 * Applies the numbered migrations that are not yet applied, in one transaction holding an advisory
 * lock, so replicas starting together apply each migration exactly once and a failed migration
 * leaves nothing half-done.
 */
export async function migrate(sql: Sql, dir = MIGRATIONS_DIR): Promise<Migrated> {
  const migrations = await listMigrations(dir);
  return sql.begin(async (tx) => {
    // A migration may rebuild an index over the whole allowlist (004: ~3 s at 1,000,000 images),
    // longer than the statement timeout that bounds the service's own queries; and a replica
    // starting beside the one that migrates waits for the lock as long.
    await tx`SELECT set_config('statement_timeout', ${`${MIGRATION_TIMEOUT_S}s`}, true)`;
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer     PRIMARY KEY,
      name       text        NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`;
    const rows = await tx<{ version: number; name: string }[]>`SELECT version, name FROM schema_migrations ORDER BY version`;
    const done = new Set(rows.map((r) => r.version));
    const known = new Set(migrations.map((m) => label(m.version, m.name)));
    const unknown = rows.map((r) => label(r.version, r.name)).filter((l) => !known.has(l));
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await tx.unsafe(await readFile(m.file, 'utf8')).simple();
      await tx`INSERT INTO schema_migrations (version, name) VALUES (${m.version}, ${m.name})`;
      applied.push(m.version);
    }
    return { applied, unknown };
  });
}
