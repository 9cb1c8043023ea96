import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '@platform/http-common';
import { connect } from '../../src/store/database.js';
import { migrate } from '../../src/store/migrate.js';
import { DIGEST_A, DIGEST_B, testApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ migrated: false, max: 20 });
});
afterAll(async () => {
  await db?.close();
});

describe('migrations', () => {
  it('apply exactly once when several replicas start at the same moment', async (ctx) => {
    // PGlite is one session behind its socket: concurrent "replicas" cannot be emulated on it.
    if (db.kind === 'embedded') ctx.skip();
    const replicas = Array.from({ length: 6 }, () => connect({ url: db.url, max: 2 }));
    try {
      const applied = (await Promise.all(replicas.map((sql) => migrate(sql)))).map((m) => m.applied);
      // every migration applied by exactly one replica
      expect(applied.flat().sort()).toEqual([1, 2, 3, 4, 5, 6]);
      expect(applied.filter((a) => a.length > 0)).toHaveLength(1);
      const rows = await db.sql`SELECT version FROM schema_migrations ORDER BY version`;
      expect(rows.map((r) => r.version)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(await migrate(db.sql)).toEqual({ applied: [], unknown: [] });
    } finally {
      await Promise.all(replicas.map((sql) => sql.end()));
    }
  });
});

describe('a migration slower than the statement timeout of the service queries', () => {
  it('completes, and a replica starting beside the one that runs it waits for it', async (ctx) => {
    const slow = await createTestDatabase({ migrated: false });
    const dir = await mkdtemp(path.join(tmpdir(), 'imagelist-migrations-'));
    const replicas = Array.from({ length: 2 }, () => connect({ url: slow.url, max: 1, statementTimeoutMs: 300 }));
    try {
      if (slow.kind === 'embedded') ctx.skip();
      await writeFile(path.join(dir, '001_slow.sql'), 'SELECT pg_sleep(1);');
      const applied = await Promise.all(replicas.map((sql) => migrate(sql, dir)));
      expect(applied.flatMap((m) => m.applied)).toEqual([1]);
      // the service's own statements are still held to their timeout
      await expect(replicas[0]!`SELECT pg_sleep(1)`).rejects.toMatchObject({ code: '57014' });
    } finally {
      await Promise.all(replicas.map((sql) => sql.end()));
      await rm(dir, { recursive: true, force: true });
      await slow.close();
    }
  });
});

describe('concurrent PUTs of one id', () => {
  let app: App;
  beforeAll(async () => {
    await migrate(db.sql);
    app = await testApp(db.sql);
  });
  afterAll(async () => app?.close());

  it('all succeed, create one row, and leave the tags of one of the writes', async () => {
    const sets = Array.from({ length: 40 }, (_, i) => [`v${i}`, `build-${i}`]);
    const results = await Promise.all(
      sets.map((tags) => app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_A, name: 'quay.io/race/app', tags } })),
    );
    expect(results.map((r) => r.statusCode)).toEqual(sets.map(() => 200));
    const rows = await db.sql`SELECT tags FROM images WHERE id = ${DIGEST_A}`;
    expect(rows).toHaveLength(1);
    expect(sets).toContainEqual(rows[0]!.tags);
  });

  it('write overlapping ids in any order without deadlocks', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `${i.toString(16)}`.padStart(64, 'e'));
    // rounds alternate ascending and descending ids, so concurrent batches meet shared rows in
    // opposite orders
    const order = Array.from({ length: 10 }, (_, round) => (round % 2 ? [...ids].reverse() : ids)).flat();
    const puts = order.map((id, k) =>
      app.inject({ method: 'PUT', url: '/images', payload: { id, name: 'quay.io/race/many', tags: [`t${k}`] } }),
    );
    const results = await Promise.all(puts);
    expect(results.filter((r) => r.statusCode !== 200).map((r) => r.body)).toEqual([]);
    expect((await db.sql`SELECT count(*)::int AS n FROM images WHERE name = 'quay.io/race/many'`)[0]!.n).toBe(20);
  });

  it('never lose tags to a concurrent PUT without tags', async () => {
    await app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_B, name: 'quay.io/race/b', tags: ['keep'] } });
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        app.inject({
          method: 'PUT',
          url: '/images',
          payload: i % 2 ? { id: DIGEST_B, name: 'quay.io/race/b' } : { id: DIGEST_B, name: 'quay.io/race/b', tags: ['keep'] },
        }),
      ),
    );
    expect(results.every((r) => r.statusCode === 200)).toBe(true);
    const [row] = await db.sql`SELECT tags FROM images WHERE id = ${DIGEST_B}`;
    expect(row!.tags).toEqual(['keep']);
  });
});
