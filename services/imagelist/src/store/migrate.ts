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

/**
 * Applies the numbered migrations that are not yet applied, in one transaction holding an advisory
 * lock, so replicas starting together apply each migration exactly once and a failed migration
 * leaves nothing half-done. Returns the versions it applied.
 */
export async function migrate(sql: Sql, dir = MIGRATIONS_DIR): Promise<number[]> {
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
    const done = new Set((await tx<{ version: number }[]>`SELECT version FROM schema_migrations`).map((r) => r.version));
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await tx.unsafe(await readFile(m.file, 'utf8')).simple();
      await tx`INSERT INTO schema_migrations (version, name) VALUES (${m.version}, ${m.name})`;
      applied.push(m.version);
    }
    return applied;
  });
}
