import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A, DIGEST_B } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { imagelistClient } from './support/http-client.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// The database still answers but takes no writes: a hot standby that the URL reaches during a
// failover, or default_transaction_read_only. The imagelist process as deployed, over HTTP.
let db: TestDatabase;
let admin: postgres.Sql;
let server: RunningServer | undefined;
let dbName = '';

beforeAll(async () => {
  db = await createTestDatabase();
  dbName = new URL(db.url).pathname.slice(1);
  const adminUrl = new URL(db.url);
  adminUrl.pathname = '/postgres';
  admin = postgres(adminUrl.toString(), { max: 1, onnotice: () => {} });
});
afterAll(async () => {
  await server?.stop('SIGKILL');
  await admin?.unsafe(`ALTER DATABASE ${dbName} RESET default_transaction_read_only`);
  await admin?.end({ timeout: 1 });
  await db?.close();
});

/** Sets the database read-only (or not) for every new session, and ends imagelist's sessions so they reconnect under it. */
async function readOnly(on: boolean): Promise<void> {
  await admin.unsafe(`ALTER DATABASE ${dbName} ${on ? 'SET default_transaction_read_only = on' : 'RESET default_transaction_read_only'}`);
  await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${dbName} AND application_name = 'imagelist'`;
}

describe('a read-only database', () => {
  it('answers PUT and DELETE 503 naming the cause (was 500), keeps reads and admission, and takes writes again without a restart', async () => {
    const port = await freePort();
    server = await startServer(['--listen', `127.0.0.1:${port}`, '--db-timeout', '1'], { DATABASE_URL: db.url });
    const base = `http://127.0.0.1:${port}`;
    const call = async (path: string, init?: RequestInit) => {
      const res = await fetch(base + path, { ...init, signal: AbortSignal.timeout(10_000) });
      return {
        status: res.status,
        type: res.headers.get('content-type'),
        retryAfter: res.headers.get('retry-after'),
        text: await res.text(),
      };
    };
    const put = (id: string) =>
      call('/images', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id, name: 'quay.io/team/ro', tags: ['v1'] }),
      });
    expect((await put(DIGEST_A)).status).toBe(200);

    await readOnly(true);
    // the pool's sessions were ended: the first statements may meet the closed connections
    let write = await put(DIGEST_B);
    for (let i = 0; write.status === 503 && !/read-only/.test(write.text) && i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      write = await put(DIGEST_B);
    }
    expect(write.status).toBe(503);
    expect(write.type).toMatch(/^application\/problem\+json/);
    expect(write.retryAfter).toBe('1');
    expect(JSON.parse(write.text).detail).toMatch(/read-only/);
    const del = await call(`/images/${DIGEST_A}`, { method: 'DELETE' });
    expect(del.status).toBe(503);
    expect(JSON.parse(del.text).detail).toMatch(/read-only/);

    // nothing was written, reads and admission go on
    expect((await call(`/images/${DIGEST_B}`)).status).toBe(404);
    expect((await call(`/images/${DIGEST_A}`)).status).toBe(200);
    expect((await call('/health/ready')).status).toBe(200);
    const review = await imagelistClient(base).review('quay.io/team/ro:v1');
    expect(review.status).toBe(200);
    expect(review.allowed).toBe(true);
    // a warn line with the cause's code, no error with a stack
    expect(server.output()).toMatch(/"level":40[^\n]*"code":"25006"/);
    expect(server.output()).not.toMatch(/"level":50[^\n]*read-only transaction/);

    await readOnly(false);
    let again = await put(DIGEST_B);
    for (let i = 0; again.status !== 200 && i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      again = await put(DIGEST_B);
    }
    expect(again.status).toBe(200);
  }, 30_000);
});
