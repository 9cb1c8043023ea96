import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { imagelistClient } from './support/http-client.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// A DELETE by repodigest (`name@sha256:<hex>`) deletes the image only if it has that name. The
// route used to look the image up in the replica's memory first: an image written a moment before
// by another writer (a replica whose change this one had not applied yet) was not found, and the
// DELETE answered 204 having deleted nothing, the image still admitted. The imagelist process as
// deployed, the other writer a session on its database.
let db: TestDatabase;
let server: RunningServer | undefined;
let il: ReturnType<typeof imagelistClient>;

beforeAll(async () => {
  db = await createTestDatabase();
  const port = await freePort();
  server = await startServer(['--listen', `127.0.0.1:${port}`], { DATABASE_URL: db.url });
  il = imagelistClient(`http://127.0.0.1:${port}`);
});
afterAll(async () => {
  await server?.stop('SIGKILL');
  await db?.close();
});

const digest = (i: number) => i.toString(16).padStart(64, 'c');
const del = (id: string) => il.call(`/images/${id}`, { method: 'DELETE' });

it('deletes by repodigest an image another writer added a moment before', async () => {
  const TRIALS = 100;
  for (let i = 0; i < TRIALS; i++) {
    await db.sql`INSERT INTO images (id, name, tags) VALUES (${digest(i)}, 'quay.io/team/app', ${[`v${i}`]})`;
    expect((await del(`quay.io/team/app@sha256:${digest(i)}`)).status).toBe(204);
  }
  const [row] = await db.sql<{ left: number }[]>`SELECT count(*)::int AS left FROM images WHERE name = 'quay.io/team/app'`;
  expect(row?.left).toBe(0);
  for (let i = 0; i < TRIALS; i += 10) expect((await il.review(`quay.io/team/app:v${i}`)).allowed).toBe(false);
});

it('deletes by any spelling of the name, and leaves an image of another name listed and admitted', async () => {
  const nginx = digest(1000);
  const other = digest(1001);
  await db.sql`INSERT INTO images (id, name, tags) VALUES (${nginx}, 'nginx', ${['v1']}), (${other}, 'quay.io/team/other', ${['v1']})`;
  await expect.poll(async () => (await il.review('quay.io/team/other:v1')).allowed).toBe(true);

  expect((await del(`quay.io/team/app@sha256:${other}`)).status).toBe(204);
  expect((await il.review('quay.io/team/other:v1')).allowed).toBe(true);
  expect((await il.call(`/images/${other}`)).status).toBe(200);

  expect((await del(`index.docker.io/library/nginx@sha256:${nginx}`)).status).toBe(204);
  expect((await il.review('nginx:v1')).allowed).toBe(false);
  const rows = await db.sql`SELECT id FROM images WHERE id IN (${nginx}, ${other})`;
  expect(rows.map((r) => r.id)).toEqual([other]);
});
