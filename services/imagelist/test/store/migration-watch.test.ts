import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres, { type Sql } from 'postgres';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect } from '../../src/store/database.js';
import { migrate, MigrationWatch } from '../../src/store/migrate.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

// The migration connection's silence bound (MigrationWatch), scaled down: 1 s for the quick
// statements where the service has 15 s. A migration's own statements, and the wait for another
// replica's migration, must not be held to it.
const QUICK_MS = 1000;
const MIGRATION_LOCK = 727_431_001;

let db: TestDatabase;
let dir: string;
let sql: Sql | undefined;
let holder: Sql | undefined;

beforeEach(async () => {
  db = await createTestDatabase({ migrated: false });
  dir = await mkdtemp(path.join(tmpdir(), 'imagelist-migrations-'));
});
afterEach(async () => {
  await sql?.end({ timeout: 0 });
  await holder?.end({ timeout: 0 });
  sql = holder = undefined;
  await rm(dir, { recursive: true, force: true });
  await db?.close();
});

/** The migration connection as the service makes it (server.ts), with this watch; `seen`: each bound its socket read. */
function watched(watch: MigrationWatch, seen: number[] = []): Sql {
  return (sql = connect({ url: db.url, max: 1, connectTimeout: 2, unansweredMs: () => (seen.push(watch.silenceMs), watch.silenceMs) }));
}

/** Another session holds the migration lock for `ms` (a replica migrating beside ours); resolves once it holds it. */
async function holdLock(ms: number): Promise<{ holding: Promise<unknown> }> {
  holder = postgres(db.url, { max: 1, onnotice: () => {} });
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const holding = holder.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    locked();
    await tx`SELECT pg_sleep(${ms / 1000})`;
  });
  await isLocked;
  // wrapped: an async function returning the promise itself would wait for it
  return { holding };
}

describe('the migration connection’s silence bound', () => {
  it('is lifted while a migration file runs: a statement silent past the quick bound completes, and the bound is back after', async (ctx) => {
    if (db.kind === 'embedded') ctx.skip();
    const watch = new MigrationWatch(QUICK_MS);
    const seen: number[] = [];
    // two statements: up to 10 minutes each
    await writeFile(path.join(dir, '001_slow.sql'), 'SELECT 1;\nSELECT pg_sleep(2)');
    expect(await migrate(watched(watch, seen), dir, watch)).toEqual({ applied: [1], unknown: [] });
    expect(Math.max(...seen)).toBe(2 * 600_000 + 10_000);
    expect(seen.at(-1)).toBe(QUICK_MS);
    expect(watch.silenceMs).toBe(QUICK_MS);
  });

  it('holds while a replica waits for another’s migration: the lock is polled, each poll answered at once', async (ctx) => {
    if (db.kind === 'embedded') ctx.skip();
    const { holding } = await holdLock(2500);
    const watch = new MigrationWatch(QUICK_MS);
    const started = Date.now();
    // a blocking pg_advisory_xact_lock went unanswered for 2.5 s: ETIMEDOUT at 1 s
    expect((await migrate(watched(watch), undefined, watch)).applied).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    await holding;
  });

  it('a replica gives up waiting for the lock after lockWaitMs, naming it', async (ctx) => {
    if (db.kind === 'embedded') ctx.skip();
    const { holding } = await holdLock(3000);
    const watch = new MigrationWatch(QUICK_MS, 1000);
    await expect(migrate(watched(watch), undefined, watch)).rejects.toThrow(
      /migration lock \(advisory lock 727431001\) was held by another session for 1 s/,
    );
    await holding;
    const [row] = await db.sql`SELECT to_regclass('schema_migrations') IS NULL AS untouched`;
    expect(row!.untouched).toBe(true);
  });
});
