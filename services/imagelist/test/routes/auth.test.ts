import { TokenStore } from '@platform/auth';
import type { App } from '@platform/http-common';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A, DIGEST_B, testApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const TOKEN = 'LF8zuwb2dJMjZLphiSUQHTeA';
const silent = { info() {}, warn() {}, error() {} };

let db: TestDatabase;
let app: App;
let dir: string;
let tokens: TokenStore;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'imagelist-auth-'));
  await writeFile(
    path.join(dir, 'tokens.yaml'),
    `tokens:\n  - name: ci-pipeline\n    token: '${TOKEN}'\n    is_disabled: false\n  - name: retired\n    token: 'oldtoken'\n    is_disabled: true\n`,
  );
  tokens = await new TokenStore(path.join(dir, 'tokens.yaml'), silent).start();
  db = await createTestDatabase();
  app = await testApp(db.sql, tokens);
});
afterAll(async () => {
  await app?.close();
  await tokens?.close();
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});

const put = (headers: Record<string, string>, id = DIGEST_A) =>
  app.inject({ method: 'PUT', url: '/images', payload: { id, name: 'quay.io/foo/app', tags: ['v1'] }, headers });

describe('bearer tokens on writes', () => {
  it.each([
    ['no Authorization header', {}, 'Bearer realm="imagelist"'],
    ['a wrong token', { authorization: 'Bearer nope' }, 'Bearer realm="imagelist", error="invalid_token"'],
    ['a disabled token', { authorization: 'Bearer oldtoken' }, 'Bearer realm="imagelist", error="invalid_token"'],
    ['another scheme', { authorization: `Basic ${TOKEN}` }, 'Bearer realm="imagelist"'],
  ])('rejects PUT with %s: 401 JSON, WWW-Authenticate, nothing written', async (_what, headers, challenge) => {
    const res = await put(headers);
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toBe(challenge);
    expect(res.json()).toMatchObject({ status: 401, title: 'Unauthorized' });
    expect(await db.sql`SELECT id FROM images`).toHaveLength(0);
  });

  it('accepts a valid token and records which token wrote', async () => {
    const res = await put({ authorization: `Bearer ${TOKEN}` });
    expect(res.statusCode).toBe(200);
    const [row] = await db.sql`SELECT created_by, updated_by FROM images WHERE id = ${DIGEST_A}`;
    expect(row).toEqual({ created_by: 'ci-pipeline', updated_by: 'ci-pipeline' });
  });

  it('guards DELETE too, and leaves reads open', async () => {
    await put({ authorization: `Bearer ${TOKEN}` }, DIGEST_B);
    const denied = await app.inject({ method: 'DELETE', url: `/images/${DIGEST_B}` });
    expect(denied.statusCode).toBe(401);
    expect((await app.inject(`/images/${DIGEST_B}`)).statusCode).toBe(200);
    expect((await app.inject('/images')).statusCode).toBe(200);
    const ok = await app.inject({ method: 'DELETE', url: `/images/${DIGEST_B}`, headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.statusCode).toBe(204);
    expect((await app.inject(`/images/${DIGEST_B}`)).statusCode).toBe(404);
  });

  it('checks the token before validating the body, so strangers learn nothing', async () => {
    const res = await app.inject({ method: 'PUT', url: '/images', payload: { id: 'bad' } });
    expect(res.statusCode).toBe(401);
  });

  it('fails closed when the tokens file is deleted', async () => {
    await unlink(path.join(dir, 'tokens.yaml'));
    const deadline = Date.now() + 5000;
    while (tokens.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const res = await put({ authorization: `Bearer ${TOKEN}` });
    expect(res.statusCode).toBe(401);
  });
});
