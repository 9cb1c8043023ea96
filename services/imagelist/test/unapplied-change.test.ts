import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { imagelistClient } from './support/http-client.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// A change the replica heard of (NOTIFY) but cannot read back, because the table is locked
// (VACUUM FULL, REINDEX, ALTER TABLE, a migration's rebuild) while the database otherwise
// answers, so heartbeats keep the index "fresh". The imagelist process as deployed, over HTTP.
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

const NAME = 'quay.io/team/locked';

async function imagelist() {
  const port = await freePort();
  server = await startServer(['--listen', `127.0.0.1:${port}`, '--db-timeout', '1'], { DATABASE_URL: db.url });
  return imagelistClient(`http://127.0.0.1:${port}`);
}

/**
 * Commits `change` and has the table locked ACCESS EXCLUSIVE in the same instant (the lock is
 * queued behind the change's own lock), before any replica can read the change back; resolves
 * with a function that releases the lock.
 */
async function commitThenLock(change: string): Promise<() => Promise<void>> {
  const changer = postgres(db.url, { max: 1, onnotice: () => {} });
  const locker = postgres(db.url, { max: 1, onnotice: () => {} });
  sessions.push(changer, locker);
  const c = await changer.reserve();
  const l = await locker.reserve();
  await c`BEGIN`;
  await c.unsafe(change);
  await l`BEGIN`;
  const locked = l`LOCK TABLE images IN ACCESS EXCLUSIVE MODE`.execute();
  // the lock request is queued behind the change's lock before the change commits
  for (;;) {
    const [w] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'images'::regclass AND NOT granted AND mode = 'AccessExclusiveLock'`;
    if (w!.n > 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  await c`COMMIT`;
  await locked;
  return async () => {
    await l`COMMIT`;
    c.release();
    l.release();
  };
}

describe('a change heard but not read back (table locked)', () => {
  it('a DELETE stops admission of the image, by tag and by digest, within 1 s + the database timeout, however long the lock lasts', async () => {
    const il = await imagelist();
    const put = await il.call('/images', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: DIGEST_A, name: NAME, tags: ['v1'] }),
    });
    expect(put.status).toBe(200);
    await new Promise((r) => setTimeout(r, 300)); // the write's notification, back on the process
    expect((await il.review(`${NAME}:v1`)).allowed).toBe(true);

    const release = await commitThenLock(`DELETE FROM images WHERE id = '${DIGEST_A}'`);
    const deletedAt = Date.now();
    try {
      await new Promise((r) => setTimeout(r, 1000));
      // the lock is held 5 s after the DELETE; every answer is a denial (or a 503), none waits past the webhook's 5 s
      while (Date.now() - deletedAt < 5000) {
        for (const image of [`${NAME}:v1`, `${NAME}@sha256:${DIGEST_A}`]) {
          const res = await il.review(image);
          expect(res.allowed, `${image} ${Date.now() - deletedAt} ms after its DELETE: ${res.text}`).toBe(false);
          expect(res.ms).toBeLessThan(4000);
        }
        const get = await il.call(`/images/${DIGEST_A}`);
        expect([404, 503]).toContain(get.status);
      }
    } finally {
      await release();
    }
    // and once the table is free, the index is current again
    const fresh = async () => /^imagelist_index_fresh 1$/m.test((await il.call('/metrics')).text);
    for (let i = 0; !(await fresh()); i++) {
      expect(i).toBeLessThan(150);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await il.review(`${NAME}:v1`)).allowed).toBe(false);
    expect(server!.output()).toContain('changes to the allowlist could not be read back in time');
  }, 30_000);

  it('after a TRUNCATE it cannot reload, it stops answering from the state before it within 1 s', async () => {
    const il = await imagelist();
    await il.call('/images', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: DIGEST_A, name: NAME, tags: ['v1'] }),
    });
    await new Promise((r) => setTimeout(r, 300));
    expect((await il.review(`${NAME}:v1`)).allowed).toBe(true);

    const release = await commitThenLock('TRUNCATE images');
    const truncatedAt = Date.now();
    try {
      // as for a DELETE: the notification's way back, then at most the index's staleness bound
      await new Promise((r) => setTimeout(r, 1000));
      while (Date.now() - truncatedAt < 4000) {
        const res = await il.review(`${NAME}:v1`);
        expect(res.allowed, `${Date.now() - truncatedAt} ms after the TRUNCATE: ${res.status} ${res.text}`).toBe(false);
        expect(res.ms).toBeLessThan(4000);
      }
    } finally {
      await release();
    }
  }, 30_000);
});
