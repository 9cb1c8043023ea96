import postgres from 'postgres';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';
import { TcpProxy, viaProxy } from './support/tcp-proxy.js';

// The imagelist process starting while another session holds the migration lock (a replica
// migrating beside it), then the host of its migration connection vanishes (no FIN, no RST: a
// failover, a partition) while new connections reach a healthy database. The start must not hang:
// the silent connection is given up (15 s without an answer to the lock's polls) and the migration
// retried on a new one.
const MIGRATION_LOCK = 727_431_001;
const QUICK_SILENCE_MS = 15_000;

let db: TestDatabase;
let proxy: TcpProxy;
let server: RunningServer | undefined;

beforeEach(async () => {
  db = await createTestDatabase({ migrated: false });
  const target = new URL(db.url);
  proxy = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
});
afterEach(async () => {
  await server?.stop('SIGKILL');
  server = undefined;
  await proxy?.stop();
  await db?.close();
});

describe('a migration connection whose host vanishes, real process', () => {
  it('is given up and the migration retried on a new connection: the service starts', async (ctx) => {
    if (db.kind === 'embedded') ctx.skip();
    // another session holds the migration lock (advisory locks are per database: this one's own)
    const holder = postgres(db.url, { max: 1, onnotice: () => {} });
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holding = holder.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
      locked();
      await released;
    });
    try {
      await isLocked;
      const port = await freePort();
      const starting = startServer(['--listen', `127.0.0.1:${port}`, '--log-level', 'info', '--db-timeout', '1'], {
        DATABASE_URL: viaProxy(db.url, proxy),
      });
      starting.catch(() => {}); // awaited below
      // its migration is in its transaction, waiting for the lock
      const deadline = Date.now() + 10_000;
      for (;;) {
        const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'imagelist' AND xact_start IS NOT NULL
          AND pid <> pg_backend_pid()`;
        if (row!.n > 0) break;
        if (Date.now() > deadline) throw new Error('the migration never began');
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 500));
      proxy.blackhole();
      const vanished = Date.now();
      release();
      await holding;

      // before: nothing more was logged and it never listened (startServer gives up after 30 s)
      server = await starting;
      const startedAfter = Date.now() - vanished;
      expect(startedAfter).toBeLessThan(QUICK_SILENCE_MS + 5000);
      const retried = server
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; code?: string })
        .filter((l) => l.msg === 'database unreachable; retrying');
      // postgres.js reports the destroyed connection of a transaction as closed
      expect(retried).toEqual([expect.objectContaining({ code: expect.stringMatching(/^(ETIMEDOUT|CONNECTION_CLOSED)$/) })]);
      const rows = await db.sql`SELECT version FROM schema_migrations ORDER BY version`;
      expect(rows.map((r) => r.version)).toEqual([1, 2, 3, 4, 5, 6]);
      const ready = await fetch(`http://127.0.0.1:${port}/health/ready`);
      expect(ready.status).toBe(200);
    } finally {
      release();
      await holding.catch(() => {});
      await holder.end({ timeout: 1 });
    }
  }, 60_000);
});
