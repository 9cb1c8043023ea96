import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { imagelistClient } from './support/http-client.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// A write's answer that reaches the replica late (a lost packet on its pool connection: TCP
// retransmits after 200 ms or more) while its listener connection is on time. Meanwhile another
// replica changes the same image, and this replica hears and applies that change first. The
// imagelist process as deployed, over HTTP; the other replica's write is plain SQL.
let db: TestDatabase;
let server: RunningServer | undefined;
let proxy: net.Server | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  await server?.stop('SIGKILL');
  server = undefined;
  proxy?.close();
});
afterAll(async () => {
  await db?.close();
});

/**
 * A proxy to the database that holds back, by `ms`, what the server sends on a connection from
 * the first answer that contains `tag` (a CommandComplete such as `INSERT 0 1`) on, in order.
 */
async function delayingProxy(target: URL, tag: string, ms: number): Promise<number> {
  proxy = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    let delaying = false;
    client.pipe(upstream);
    upstream.on('data', (data: Buffer) => {
      if (!delaying && data.includes(tag)) delaying = true;
      if (delaying) setTimeout(() => client.write(data), ms);
      else client.write(data);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', () => setTimeout(end, ms + 50));
  });
  await new Promise<void>((resolve) => proxy!.listen(0, '127.0.0.1', resolve));
  return (proxy.address() as net.AddressInfo).port;
}

const NAME = 'quay.io/team/late';

async function imagelist(databaseUrl: string) {
  const port = await freePort();
  server = await startServer(['--listen', `127.0.0.1:${port}`], { DATABASE_URL: databaseUrl });
  const { call, review } = imagelistClient(`http://127.0.0.1:${port}`);
  return { call, allowed: async (image: string) => (await review(image)).allowed };
}

describe('a write whose answer arrives after a later change to the same image was applied', () => {
  it('an image deleted by another replica right after this one wrote it is not admitted again from memory', async () => {
    const url = new URL(db.url);
    const port = await delayingProxy(url, 'INSERT 0 ', 400);
    const via = new URL(db.url);
    via.hostname = '127.0.0.1';
    via.port = String(port);
    const il = await imagelist(via.toString());

    const written = il.call('/images', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: DIGEST_A, name: NAME, tags: ['v1'] }),
    });
    // the other replica deletes it as soon as it is committed (its answer to this one still on the way)
    for (;;) {
      const rows = await db.sql`DELETE FROM images WHERE id = ${DIGEST_A} RETURNING id`;
      if (rows.length) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect((await written).status).toBe(200);
    // the database holds no such image, and every answer says so, now and later
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(await il.allowed(`${NAME}:v1`), `${i * 100 + 100} ms after the PUT's answer`).toBe(false);
      expect(await il.allowed(`${NAME}@sha256:${DIGEST_A}`)).toBe(false);
      expect((await il.call(`/images/${DIGEST_A}`)).status).toBe(404);
    }
  }, 30_000);

  it('an image written again by another replica right after this one deleted it is admitted again', async () => {
    const url = new URL(db.url);
    const port = await delayingProxy(url, 'DELETE 1', 400);
    const via = new URL(db.url);
    via.hostname = '127.0.0.1';
    via.port = String(port);
    await db.sql`INSERT INTO images (id, name, tags) VALUES (${DIGEST_A}, ${NAME}, '{v1}') ON CONFLICT DO NOTHING`;
    const il = await imagelist(via.toString());
    for (let i = 0; !(await il.allowed(`${NAME}:v1`)); i++) {
      expect(i).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 20));
    }

    const deleted = il.call(`/images/${DIGEST_A}`, { method: 'DELETE' });
    for (;;) {
      const [row] = await db.sql`SELECT count(*)::int AS n FROM images WHERE id = ${DIGEST_A}`;
      if (row!.n === 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await db.sql`INSERT INTO images (id, name, tags) VALUES (${DIGEST_A}, ${NAME}, '{v1}')`;
    expect((await deleted).status).toBe(204);
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(await il.allowed(`${NAME}:v1`), `${i * 100 + 100} ms after the DELETE's answer`).toBe(true);
    }
  }, 30_000);
});
