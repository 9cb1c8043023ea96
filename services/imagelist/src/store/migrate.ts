import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Sql, TransactionSql } from 'postgres';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** Arbitrary, fixed key of the advisory lock that serialises migrations across replicas. */
const MIGRATION_LOCK = 727_431_001;
/** How long one migration statement may run: minutes, not the service's 5 s (an index rebuild). */
const MIGRATION_TIMEOUT_S = 600;
/** How long the migration's other statements may run: the lock's polls, the bookkeeping. */
const QUICK_TIMEOUT_S = 5;
/** How long an answer may take to arrive once its statement_timeout has passed (as the pool's, database.ts). */
const ANSWER_MARGIN_MS = 10_000;
/** How often a replica asks for the lock while another replica migrates. */
const LOCK_POLL_MS = 250;
/**
 * A session of ours idle in its migration's transaction this long is ended by the server, and its
 * locks released: one whose client gave it up as silent (below) while the server could still
 * answer (a partition) would otherwise hold the migration lock, and a migrated table's, until the
 * server's TCP keepalive (2 h by default). Ours is idle for milliseconds between its statements.
 */
const IDLE_IN_MIGRATION_S = 60;

/**
 * How long the migration connection may read nothing after sending a statement before its
 * watchdog destroys it as dead (connect's `unansweredMs`, unanswered-socket.ts), moved by migrate()
 * as it goes: the statement's statement_timeout plus 10 s for the answer. A statement sent to a host
 * that vanished without a FIN or RST is never answered, and the server's statement_timeout cannot
 * end a statement the server never got; without a bound the start waited forever.
 */
export class MigrationWatch {
  silenceMs: number;

  constructor(
    /** For the quick statements, the lock's polls among them: statement_timeout (5 s) + 10 s. */
    readonly quickMs = QUICK_TIMEOUT_S * 1000 + ANSWER_MARGIN_MS,
    /** How long a replica waits for another's migration before its start fails. */
    readonly lockWaitMs = MIGRATION_TIMEOUT_S * 1000,
  ) {
    this.silenceMs = quickMs;
  }
}

/**
 * The longest a migration file may legitimately go unanswered: up to 10 minutes per statement
 * (statement_timeout counts each statement of a simple query on its own, and PostgreSQL sends their
 * answers together at the end). A file holds at most one statement more than it has semicolons.
 */
function fileSilenceMs(text: string): number {
  return text.split(';').length * MIGRATION_TIMEOUT_S * 1000 + ANSWER_MARGIN_MS;
}

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
 *
 * `watch`: its connection's silence bound (MigrationWatch), which this moves: 15 s while it waits
 * for the lock and runs its own quick statements, 10 minutes per statement while a migration file
 * runs. A replica waits for another's migration by asking for the lock every 250 ms, rather than
 * with one statement that may go unanswered for minutes, so that a connection gone silent while it
 * waits is given up within 15 s.
 */
export async function migrate(sql: Sql, dir = MIGRATIONS_DIR, watch = new MigrationWatch()): Promise<Migrated> {
  const migrations = await listMigrations(dir);
  watch.silenceMs = watch.quickMs;
  return sql.begin(async (tx) => {
    const statementTimeout = (s: number) => tx`SELECT set_config('statement_timeout', ${`${s}s`}, true)`;
    await tx`SELECT set_config('idle_in_transaction_session_timeout', ${`${IDLE_IN_MIGRATION_S}s`}, true)`;
    await statementTimeout(QUICK_TIMEOUT_S);
    await lockOrWait(tx, watch.lockWaitMs);
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
      const text = await readFile(m.file, 'utf8');
      // A migration may rebuild an index over the whole allowlist (004: ~3 s at 1,000,000 images),
      // longer than the statement timeout that bounds the service's own queries.
      await statementTimeout(MIGRATION_TIMEOUT_S);
      watch.silenceMs = fileSilenceMs(text);
      try {
        await tx.unsafe(text).simple();
      } finally {
        watch.silenceMs = watch.quickMs;
      }
      await statementTimeout(QUICK_TIMEOUT_S);
      await tx`INSERT INTO schema_migrations (version, name) VALUES (${m.version}, ${m.name})`;
      applied.push(m.version);
    }
    return { applied, unknown };
  });
}

/**
 * Takes the migration lock, waiting while another session holds it (a replica migrating beside
 * this one) by asking again every 250 ms: each ask is answered at once, so the watchdog's 15 s
 * holds throughout the wait. Fails after `waitMs`.
 */
async function lockOrWait(tx: TransactionSql, waitMs: number): Promise<void> {
  const started = Date.now();
  for (;;) {
    const [row] = await tx<{ locked: boolean }[]>`SELECT pg_try_advisory_xact_lock(${MIGRATION_LOCK}) AS locked`;
    if (row!.locked) return;
    if (Date.now() - started >= waitMs) {
      throw new Error(
        `the migration lock (advisory lock ${MIGRATION_LOCK}) was held by another session for ${Math.round(waitMs / 1000)} s: another replica's migration still running, or a session holding the lock`,
      );
    }
    await sleep(LOCK_POLL_MS);
  }
}
