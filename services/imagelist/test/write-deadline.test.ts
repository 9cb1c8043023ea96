import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/store/database.js';
import { ImageSql } from '../src/store/image-sql.js';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { imagelistClient } from './support/http-client.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';
import { TcpProxy, viaProxy } from './support/tcp-proxy.js';

// A write answered 503 ("may or may not have been made") whose statement is held up on the network
// and reaches the database after that answer, and after a write the client made next. It used to
// commit then: a DELETE answered 204 by another replica was undone by the PUT answered 503 before
// it, and the image admitted again. The imagelist process as deployed; the other replica's writes
// are plain SQL.
let db: TestDatabase;
let proxy: TcpProxy | undefined;
let server: RunningServer | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  await server?.stop('SIGKILL');
  server = undefined;
  await proxy?.stop();
  proxy = undefined;
});
afterAll(async () => {
  await db?.close();
});

const NAME = 'quay.io/team/late-write';

/** imagelist reaching the database through a proxy the test freezes; ready once its index is fresh. */
async function imagelistBehindProxy() {
  const target = new URL(db.url);
  proxy = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
  const port = await freePort();
  server = await startServer(['--listen', `127.0.0.1:${port}`, '--db-timeout', '1'], { DATABASE_URL: viaProxy(db.url, proxy) });
  const { call, review } = imagelistClient(`http://127.0.0.1:${port}`);
  const fresh = async () => /^imagelist_index_fresh 1$/m.test((await call('/metrics')).text);
  for (const started = Date.now(); !(await fresh());) {
    if (Date.now() - started > 5000) throw new Error('index not fresh within 5 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  const write = (method: 'PUT' | 'DELETE', tags?: string[]) =>
    method === 'PUT'
      ? call('/images', {
          method,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ id: DIGEST_A, name: NAME, tags }),
        })
      : call(`/images/${DIGEST_A}`, { method });
  return { write, allowed: async (image: string) => (await review(image)).allowed };
}

const held = async () => (await db.sql<{ tags: string[] }[]>`SELECT tags FROM images WHERE id = ${DIGEST_A}`)[0]?.tags;

describe.skipIf(process.env.DATABASE_URL === undefined)('a write that reaches the database after its answer', () => {
  it("the first write, which reads the server's clock first, still answers within one deadline, and is not made late", async () => {
    const target = new URL(db.url);
    proxy = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
    const sql = connect({ url: viaProxy(db.url, proxy), max: 2 });
    await db.sql`INSERT INTO images (id, name, tags) VALUES (${DIGEST_A}, ${NAME}, '{v1}') ON CONFLICT DO NOTHING`;
    const locker = await db.sql.reserve();
    try {
      await sql`SELECT 1`; // connected
      await locker`BEGIN`;
      await locker`SELECT 1 FROM images WHERE id = ${DIGEST_A} FOR UPDATE`; // the DELETE will wait for it
      proxy.freeze(); // the clock's read waits 300 ms on the network, then the DELETE for the lock
      const images = new ImageSql(sql, 600); // no heartbeat has read the clock
      const started = Date.now();
      const deleted = images.delete(DIGEST_A);
      setTimeout(() => proxy!.thaw(), 300);
      await expect(deleted).rejects.toMatchObject({ code: 'CLIENT_DEADLINE' });
      expect(Date.now() - started).toBeLessThan(800); // one deadline for both, not one each (900 ms)
      await locker`COMMIT`; // the DELETE goes on now, past its deadline: refused
      await new Promise((r) => setTimeout(r, 300));
      expect(await held()).toEqual(['v1']);
    } finally {
      await locker`ROLLBACK`.catch(() => {});
      locker.release();
      await sql.end({ timeout: 1 });
      await db.sql`DELETE FROM images WHERE id = ${DIGEST_A}`;
    }
  });

  // The network may deliver a statement in time and hold back the message that commits it (the
  // extended protocol's Sync): checked as each row was written, such a write committed late.
  it('the database checks the deadline as the write commits, not as its rows are written', async () => {
    const [row] = await db.sql<{ now: number }[]>`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now`;
    const now = row!.now;
    const late = db.sql.begin(async (tx) => {
      await tx`SELECT set_config('imagelist.write_deadline', ${String(now + 200)}, true)`;
      await tx`INSERT INTO images (id, name, tags) VALUES (${DIGEST_A}, ${NAME}, '{v1}')`; // in time
      await tx`SELECT pg_sleep(0.4)`; // the commit comes after the deadline
    });
    await expect(late).rejects.toMatchObject({ code: 'IL001' });
    expect(await held()).toBeUndefined();
    // without the setting (plain SQL, an older replica) nothing is checked
    await db.sql`INSERT INTO images (id, name, tags) VALUES (${DIGEST_A}, ${NAME}, '{v1}')`;
    expect(await held()).toEqual(['v1']);
    await db.sql`DELETE FROM images WHERE id = ${DIGEST_A}`;
  });

  // The margin before the answer (200 ms) took all of a 0.1-0.2 s --db-timeout: every write refused.
  it('a short deadline leaves the write time to be made', async () => {
    const images = new ImageSql(db.sql, 100);
    const [row] = await images.upsert([{ digest: DIGEST_A, name: NAME, tags: ['short'], by: null }]);
    expect(row?.tags).toEqual(['short']);
    expect(await images.delete(DIGEST_A)).toBe(true);
  });

  it('a PUT answered 503 is not made when its statement arrives after a later DELETE', async () => {
    const app = await imagelistBehindProxy();
    proxy!.freeze(); // the network holds what the replica sends
    const put = await app.write('PUT', ['v1']);
    expect(put.status).toBe(503);
    // another replica's DELETE, acknowledged: the image was never there
    await db.sql`DELETE FROM images WHERE id = ${DIGEST_A}`;
    proxy!.thaw(); // the PUT's statement arrives now
    await new Promise((r) => setTimeout(r, 1000));
    expect(await held()).toBeUndefined();
    expect(await app.allowed(`${NAME}:v1`)).toBe(false);
  }, 20_000);

  it('a DELETE answered 503 is not made when its statement arrives after a later PUT', async () => {
    const app = await imagelistBehindProxy();
    expect((await app.write('PUT', ['v1'])).status).toBe(200);
    proxy!.freeze();
    expect((await app.write('DELETE')).status).toBe(503);
    // another replica's PUT, acknowledged: the image keeps being listed, with a new tag
    await db.sql`UPDATE images SET tags = '{v2}' WHERE id = ${DIGEST_A}`;
    proxy!.thaw();
    await new Promise((r) => setTimeout(r, 1000));
    expect(await held()).toEqual(['v2']);
    expect(await app.allowed(`${NAME}:v2`)).toBe(true);
  }, 20_000);
});
