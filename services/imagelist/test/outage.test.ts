import type { App } from '@platform/http-common';
import type { Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/store/database.js';
import { DIGEST_A, testApp } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TcpProxy, viaProxy } from './support/tcp-proxy.js';

let db: TestDatabase;
let proxy: TcpProxy;
let sql: Sql;
let app: App;

beforeAll(async () => {
  db = await createTestDatabase();
  const target = new URL(db.url);
  proxy = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
  sql = connect({ url: viaProxy(db.url, proxy), max: db.kind === 'embedded' ? 1 : 4, connectTimeout: 2 });
  app = await testApp(sql);
});
afterAll(async () => {
  await app?.close();
  await sql?.end({ timeout: 1 });
  await proxy?.stop();
  await db?.close();
});

const putImage = () => app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_A, name: 'quay.io/foo/app', tags: ['v1'] } });

describe('database outage', () => {
  it('answers 503 with a JSON error while the database is away, then recovers by itself', async (ctx) => {
    // PGlite's socket server serves one connection and does not survive a cut one; a server does.
    if (db.kind === 'embedded') ctx.skip();
    expect((await putImage()).statusCode).toBe(200);
    expect((await app.inject('/health/ping')).statusCode).toBe(200);

    await proxy.cut();
    for (const req of [
      () => app.inject('/health/ping'),
      () => app.inject('/images'),
      () => app.inject(`/images/${DIGEST_A}`),
      putImage,
      () => app.inject({ method: 'DELETE', url: `/images/${DIGEST_A}` }),
    ]) {
      const res = await req();
      expect(res.statusCode).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.headers['retry-after']).toBe('1');
      const body = res.json();
      expect(body.status).toBe(503);
      // no driver internals on the wire
      expect(res.body).not.toMatch(/ECONN|127\.0\.0\.1|postgres/i);
    }

    await proxy.restore();
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await app.inject('/health/ping')).statusCode;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
    const res = await app.inject(`/images/${DIGEST_A}`);
    expect(res.statusCode).toBe(200);
    expect(res.json().tags).toEqual(['v1']);
  });
});
