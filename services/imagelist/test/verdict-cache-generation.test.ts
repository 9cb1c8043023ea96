import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// Admission verdicts from memory are remembered until the index changes (its generation). When
// the allowlist outgrows --index-max-images the index is given up and a new one is loaded later:
// its generation counts from 0 again. The imagelist process as deployed, over HTTP.
let db: TestDatabase;
let server: RunningServer | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  await server?.stop('SIGKILL');
  server = undefined;
});
afterAll(async () => {
  await db?.close();
});

const hex = (n: number) => n.toString(16).padStart(64, '0');

describe('verdicts remembered from an index that was given up', () => {
  it('an image deleted while the replica was over --index-max-images is not admitted from a verdict of the old index', async () => {
    // three images: exactly --index-max-images
    for (const [n, name] of [
      [1, 'quay.io/team/a'],
      [2, 'quay.io/team/b'],
      [3, 'quay.io/team/gone'],
    ] as const) {
      await db.sql`INSERT INTO images (id, name, tags) VALUES (${hex(n)}, ${name}, '{v1}')`;
    }
    const port = await freePort();
    server = await startServer(['--listen', `127.0.0.1:${port}`, '--index-max-images', '3'], { DATABASE_URL: db.url });
    const base = `http://127.0.0.1:${port}`;
    const metric = async (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${base}/metrics`)).text())?.[1]);
    const until = async (check: () => Promise<boolean>) => {
      for (let i = 0; !(await check()); i++) {
        if (i > 250) throw new Error('not within 5 s');
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const allowed = async (image: string) => {
      const res = await fetch(`${base}/admission/imagereview`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', spec: { containers: [{ image }] } }),
      });
      return ((await res.json()) as { status: { allowed: boolean } }).status.allowed;
    };
    await until(async () => (await metric('imagelist_index_fresh')) === 1);
    expect(await allowed('quay.io/team/gone:v1')).toBe(true); // remembered, from memory

    // a fourth image: over the limit, the index is given up
    await db.sql`INSERT INTO images (id, name, tags) VALUES (${hex(4)}, 'quay.io/team/d', '{v1}')`;
    await until(async () => (await metric('imagelist_index_over_limit')) === 1);
    // the image is delisted meanwhile (answered from the database)
    await db.sql`DELETE FROM images WHERE id = ${hex(3)}`;
    expect(await allowed('quay.io/team/gone:v1')).toBe(false);
    // the listener reconnects (a restart of the database would do the same): three images fit again
    await db.sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = current_database() AND backend_type = 'client backend' AND application_name <> 'imagelist'`; // the listener
    await until(async () => (await metric('imagelist_index_over_limit')) === 0 && (await metric('imagelist_index_fresh')) === 1).catch(
      (e) => {
        console.log(server!.output());
        throw e;
      },
    );
    expect(await metric('imagelist_index_images')).toBe(3);
    expect(await allowed('quay.io/team/gone:v1')).toBe(false);
    expect(await allowed('quay.io/team/a:v1')).toBe(true);
  }, 30_000);
});
