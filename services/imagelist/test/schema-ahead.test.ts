import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/store/migrate.js';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// A rolling update: an older imagelist starts against a database a newer one has migrated. It must
// start and serve, and say so: its code may not match the schema.
let db: TestDatabase;
let server: RunningServer | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.sql`INSERT INTO schema_migrations (version, name) VALUES (999, 'from_a_newer_version')`;
});
afterAll(async () => {
  await server?.stop('SIGKILL');
  await db?.close();
});

describe('a database migrated by a newer version', () => {
  it('migrate() names the migrations this version does not know, and applies nothing', async () => {
    expect(await migrate(db.sql)).toEqual({ applied: [], unknown: ['999_from_a_newer_version'] });
  });

  it('the process starts, logs one warning naming them, and serves', async () => {
    const port = await freePort();
    server = await startServer(['--listen', `127.0.0.1:${port}`, '--db-timeout', '1'], { DATABASE_URL: db.url });
    const base = `http://127.0.0.1:${port}`;
    const warnings = server
      .output()
      .split('\n')
      .filter((line) => line.includes('the database has migrations this version does not know'));
    expect(warnings).toHaveLength(1);
    expect(JSON.parse(warnings[0]!)).toMatchObject({
      level: 40,
      unknown: ['999_from_a_newer_version'],
      msg: 'the database has migrations this version does not know: 999_from_a_newer_version; a newer imagelist migrated it',
    });

    const put = await fetch(`${base}/images`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: DIGEST_A, name: 'quay.io/team/ahead', tags: ['v1'] }),
    });
    expect(put.status).toBe(200);
    const get = await fetch(`${base}/images/${DIGEST_A}`);
    expect(get.status).toBe(200);
    let ready = await fetch(`${base}/health/ready`);
    for (let i = 0; ready.status !== 200; i++) {
      expect(i).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 50));
      ready = await fetch(`${base}/health/ready`);
    }
  }, 30_000);
});
