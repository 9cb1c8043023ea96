import type { App } from '@platform/http-common';
import bcrypt from 'bcryptjs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, metric, newAccount, SHARED_KEY, testApp } from '../support/app.js';

let app: App;
const account = newAccount();
beforeAll(async () => {
  app = await testApp();
});
afterAll(() => app?.close());

const protectedRoutes: [string, string, unknown?][] = [
  ['GET', `/v1/ecr/${account}/repositories`],
  ['POST', `/v1/ecr/${account}/repositories/grp`, { RepositoryName: 'x' }],
  ['GET', `/v1/ecr/${account}/repositories/grp`],
  ['GET', `/v1/ecr/${account}/repositories/grp/x`],
  ['PUT', `/v1/ecr/${account}/repositories/grp/x`, { ScanOnPush: 'true' }],
  ['DELETE', `/v1/ecr/${account}/repositories/grp/x`],
  ['GET', `/v1/ecr/${account}/repositories/grp/x/images`],
];

const badTokens: [string, Record<string, string>][] = [
  ['no X-Auth-Token', {}],
  ['the shared key itself instead of its hash', { 'x-auth-token': SHARED_KEY }],
  ['a bcrypt hash of another key', { 'x-auth-token': bcrypt.hashSync('not-the-key', 4) }],
  ['a malformed hash', { 'x-auth-token': '$2b$04$notahash' }],
  ['a bearer token', { authorization: `Bearer ${SHARED_KEY}` }],
];

describe('X-Auth-Token', () => {
  for (const [tokenCase, headers] of badTokens) {
    it.each(protectedRoutes)(`answers 403 JSON with ${tokenCase}: %s %s`, async (method, url, payload) => {
      const res = await app.inject({ method: method as 'GET', url, headers, ...(payload ? { payload } : {}) });
      expect(res.statusCode).toBe(403);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json()).toEqual({ type: 'about:blank', title: 'Forbidden', status: 403, detail: 'A valid X-Auth-Token is required.' });
    });
  }

  it('rejects before validating or touching AWS: a bad account id without a token is 403, not 400', async () => {
    const res = await app.inject({ url: '/v1/ecr/not-an-account/repositories' });
    expect(res.statusCode).toBe(403);
    const body = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${account}/repositories/grp`,
      payload: '{broken',
      headers: { 'content-type': 'application/json' },
    });
    expect(body.statusCode).toBe(403);
    expect(await metric(app, 'aws_api_calls_total')).toBe(0);
  });

  it('is checked before routing, as the original: without a token a path with no route or no such method is 403, with one 404 or 405', async () => {
    const unrouted: [string, string][] = [
      ['GET', '/v1/ecr/nothing/here'],
      ['GET', '/elsewhere'],
      ['PATCH', `/v1/ecr/${account}/repositories`],
      ['POST', `/v1/ecr/${account}/repositories/grp/x/images`],
    ];
    for (const [method, url] of unrouted) {
      const res = await app.inject({ method: method as 'GET', url });
      // Before: 404 No route / 405 with Allow, which told a caller without the key what exists.
      expect(res.statusCode, `${method} ${url}`).toBe(403);
      expect(res.headers.allow, `${method} ${url}`).toBeUndefined();
      expect(res.json().detail).toBe('A valid X-Auth-Token is required.');
      const authorized = await app.inject({ method: method as 'GET', url, headers: auth });
      expect(authorized.statusCode, `${method} ${url}`).toBe(url.startsWith(`/v1/ecr/${account}`) ? 405 : 404);
    }
    // The public paths' other methods need no token, as with the original (its public paths skipped the check).
    const ping = await app.inject({ method: 'POST', url: '/v1/ecr/ping' });
    expect(ping.statusCode).toBe(405);
    expect(ping.headers.allow).toBe('GET, HEAD');
    // CORS preflights stay public on any path.
    expect((await app.inject({ method: 'OPTIONS', url: '/v1/ecr/nothing/here' })).statusCode).toBe(200);
  });

  it('accepts a bcrypt hash of the shared key, whatever its salt and cost', async () => {
    for (const token of [auth['x-auth-token'], bcrypt.hashSync(SHARED_KEY, 5)]) {
      const res = await app.inject({ url: `/v1/ecr/${account}/repositories`, headers: { 'x-auth-token': token } });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual([]);
    }
  });

  it.each(['/v1/ecr/ping', '/v1/ecr/version', '/v1/ecr/metrics', '/v1/ecr/docs/json'])('leaves %s public', async (url) => {
    expect((await app.inject(url)).statusCode).toBe(200);
  });
});

describe('forged X-Auth-Token values', () => {
  it('are refused at once beyond two verifications under way, while a verified token keeps passing, and counted', async () => {
    const flooded = await testApp();
    try {
      const url = `/v1/ecr/${newAccount()}/repositories`;
      expect((await flooded.inject({ url, headers: auth })).statusCode).toBe(200);
      // 20 distinct well-formed hashes of another key, at the highest cost accepted (12).
      const forged = Array.from({ length: 20 }, (_, i) => bcrypt.hashSync(`forged-${i}`, 4).replace(/^\$2b\$04\$/, '$2b$12$'));
      const flood = forged.map((token) => flooded.inject({ url, headers: { 'x-auth-token': token } }));
      expect((await flooded.inject({ url, headers: auth })).statusCode).toBe(200);
      // The two verified are wrong keys (403); the others were not verified: 503, retry.
      const statuses = (await Promise.all(flood)).map((r) => r.statusCode);
      expect(statuses.filter((s) => s === 403)).toHaveLength(2);
      expect(statuses.filter((s) => s === 503)).toHaveLength(18);
      expect(await metric(flooded, 'x_auth_token_verifications_total', { outcome: 'computed' })).toBe(3); // the good one and two forged
      expect(await metric(flooded, 'x_auth_token_verifications_total', { outcome: 'refused_busy' })).toBe(18);
    } finally {
      await flooded.close();
    }
  });

  it('answers a valid token that arrives while bcrypt is busy 503 with Retry-After, not 403 (a wrong key)', async () => {
    const flooded = await testApp();
    try {
      const url = `/v1/ecr/${newAccount()}/repositories`;
      const forged = [0, 1].map((i) => bcrypt.hashSync(`forged-${i}`, 4).replace(/^\$2b\$04\$/, '$2b$12$'));
      const flood = forged.map((token) => flooded.inject({ url, headers: { 'x-auth-token': token } }));
      // Both forged tokens under way (cost 12: a quarter of a second each).
      while ((await metric(flooded, 'x_auth_token_verifications_total', { outcome: 'computed' })) < 2) await sleep(5);
      const fresh = { 'x-auth-token': bcrypt.hashSync(SHARED_KEY, 4) };
      const busy = await flooded.inject({ url, headers: fresh });
      expect(busy.statusCode).toBe(503);
      expect(busy.headers['retry-after']).toBe('1');
      expect(busy.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(busy.json()).toMatchObject({ status: 503, detail: 'The X-Auth-Token could not be verified now; retry the request.' });
      expect((await Promise.all(flood)).map((r) => r.statusCode)).toEqual([403, 403]);
      // Retried once bcrypt is free, it passes.
      expect((await flooded.inject({ url, headers: fresh })).statusCode).toBe(200);
    } finally {
      await flooded.close();
    }
  });
});
