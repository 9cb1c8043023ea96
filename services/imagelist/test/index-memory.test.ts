import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// An allowlist under --index-max-images whose names do not fit the heap: the real process, with a
// small heap, must give its index up and answer from the database, not die of heap exhaustion.
describe.skipIf(!process.env.DATABASE_URL)(
  'imagelist with an allowlist its heap cannot hold (needs a PostgreSQL server: DATABASE_URL)',
  () => {
    let db: TestDatabase;
    let server: RunningServer | undefined;

    beforeAll(async () => {
      db = await createTestDatabase();
      // 80,000 distinct names of ~60 characters: ~30 MB as the index estimates them, more than
      // the 20 MB its names may take of a heap with a 64 MB old generation (which they exhaust).
      await db.sql`
      INSERT INTO images (id, name, tags)
      SELECT encode(sha256(i::text::bytea), 'hex'), 'registry.example.com/team-' || (i % 500) || '/a-service-of-its-own-' || i, ARRAY['v1']
      FROM generate_series(1, 80000) AS i`;
      await db.sql`ANALYZE images`;
    }, 60_000);
    afterAll(async () => {
      await server?.stop('SIGKILL');
      await db?.close();
    });

    it('gives the index up, says which limit it reached, and answers admission from the database', async () => {
      const port = await freePort();
      server = await startServer(['--listen', `127.0.0.1:${port}`, '--database-url', db.url, '--log-level', 'info'], {
        NODE_OPTIONS: '--max-old-space-size=64 --max-semi-space-size=16',
      });
      const base = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 30_000;
      while (!/"msg":"the allowlist's names would take more of the JavaScript heap than the index may/.test(server.output())) {
        expect(server.child.exitCode, server.output().slice(-2000)).toBeNull();
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 100));
      }
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/^imagelist_index_over_limit 1$/m);
      expect(metrics).toMatch(/^imagelist_index_images 0$/m);
      const review = (image: string) =>
        fetch(`${base}/admission/imagereview`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', spec: { containers: [{ image }] } }),
        }).then(async (res) => ((await res.json()) as { status: { allowed: boolean } }).status.allowed);
      expect(await review('registry.example.com/team-7/a-service-of-its-own-79007:v1')).toBe(true);
      expect(await review('registry.example.com/team-7/a-service-of-its-own-79007:v2')).toBe(false);
      expect((await fetch(`${base}/health/ready`)).status).toBe(200);
      expect(server.child.exitCode).toBeNull();
      expect(await server.stop()).toBe(0);
      server = undefined;
    }, 60_000);
  },
);
