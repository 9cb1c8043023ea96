import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { imagelistClient } from './support/http-client.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// The images table locked (VACUUM FULL, a migration's rewrite, a long ALTER TABLE) while the
// database otherwise answers: a replica that answers admission from the database cannot answer a
// review, and must not be ready, whatever `SELECT 1` says.
let db: TestDatabase;
let server: RunningServer | undefined;
const sessions: postgres.Sql[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  await server?.stop('SIGKILL');
  server = undefined;
  for (const s of sessions.splice(0)) await s.end({ timeout: 1 });
});
afterAll(async () => {
  await db?.close();
});

/** Holds `LOCK TABLE images IN ACCESS EXCLUSIVE MODE` until the returned function is called. */
async function lockImages(): Promise<() => Promise<void>> {
  const locker = postgres(db.url, { max: 1, onnotice: () => {} });
  sessions.push(locker);
  const l = await locker.reserve();
  await l`BEGIN`;
  await l`LOCK TABLE images IN ACCESS EXCLUSIVE MODE`;
  return async () => {
    await l`COMMIT`;
    l.release();
  };
}

const ready = (base: string) => imagelistClient(base).call('/health/ready');

async function imagelist(): Promise<string> {
  const port = await freePort();
  server = await startServer(['--listen', `127.0.0.1:${port}`, '--db-timeout', '1'], { DATABASE_URL: db.url });
  return `http://127.0.0.1:${port}`;
}

/** Our lookups waiting in the database. */
async function lookupsInFlight(): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%FROM images WHERE id = ''''%'`;
  return row!.n;
}

describe('/health/ready while the images table is locked', () => {
  it('a replica started while the table is locked answers 503 naming the lookup, within 2 s, until the lock goes; then 200', async () => {
    const release = await lockImages();
    let released = false;
    try {
      const base = await imagelist();
      const until = Date.now() + 4000;
      let named = 0;
      while (Date.now() < until) {
        const res = await ready(base);
        expect(res.status, res.text).toBe(503);
        expect(res.ms).toBeLessThan(2000);
        if (/allowlist lookup/.test(res.text)) named++;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(named).toBeGreaterThan(0);
      await release();
      released = true;
      let res = await ready(base);
      for (let i = 0; res.status !== 200; i++) {
        expect(i, res.text).toBeLessThan(100);
        await new Promise((r) => setTimeout(r, 50));
        res = await ready(base);
      }
    } finally {
      if (!released) await release();
    }
  }, 30_000);

  it('a replica started on a free table is ready', async () => {
    const base = await imagelist();
    let res = await ready(base);
    for (let i = 0; res.status !== 200; i++) {
      expect(i, res.text).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 50));
      res = await ready(base);
    }
  }, 30_000);

  it('answering from the database, probes share one lookup: never more than one in flight, each answered within the deadline', async () => {
    // without the in-memory index every answer comes from the database
    const app = await buildApp({ sql: db.sql, logger: false, defaultMetrics: false, dbDeadlineMs: 500 });
    try {
      expect((await app.inject('/health/ready')).statusCode).toBe(200);
      const release = await lockImages();
      try {
        for (let round = 0; round < 6; round++) {
          const started = performance.now();
          const answers = await Promise.all(Array.from({ length: 20 }, () => app.inject('/health/ready')));
          expect(performance.now() - started).toBeLessThan(1000);
          for (const res of answers) {
            expect(res.statusCode).toBe(503);
            expect(res.json<{ detail: string }>().detail).toMatch(/did not answer an allowlist lookup within 500 ms/);
          }
          expect(await lookupsInFlight()).toBeLessThanOrEqual(1);
          await new Promise((r) => setTimeout(r, 300));
        }
        // the ping, the original's route, still only asks whether the database answers
        expect((await app.inject('/health/ping')).statusCode).toBe(200);
      } finally {
        await release();
      }
      let res = await app.inject('/health/ready');
      for (let i = 0; res.statusCode !== 200; i++) {
        expect(i).toBeLessThan(100);
        await new Promise((r) => setTimeout(r, 50));
        res = await app.inject('/health/ready');
      }
    } finally {
      await app.close();
    }
  }, 30_000);
});
