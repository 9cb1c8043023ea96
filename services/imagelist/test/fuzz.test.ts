import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A, DIGEST_B, testApp } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { junk as anyJson } from './support/junk.js';

// Thousands of generated malformed requests over real HTTP at the app on a real database: no 5xx,
// every error problem+json, no malformed review allowed, and the table unchanged.
let db: TestDatabase;
let app: App;
let base: string;
const pod = JSON.parse(readFileSync(new URL('./admission/fixtures/pod.json', import.meta.url), 'utf8')) as {
  request: Record<string, unknown>;
};

beforeAll(async () => {
  db = await createTestDatabase();
  await db.sql`INSERT INTO images (id, name, tags) VALUES (${DIGEST_A}, 'quay.io/team/app', '{v1}'), (${DIGEST_B}, 'nginx', '{1.25}')`;
  app = await testApp(db.sql);
  await app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await app?.close();
  await db?.close();
});

const checksum = async () =>
  (
    await db.sql<
      { c: string }[]
    >`SELECT md5(string_agg(id || name || array_to_string(tags, ',') || updated_at, '|' ORDER BY id)) AS c FROM images`
  )[0]!.c;

const junk = anyJson(1);

/** A field of the AdmissionReview request that, broken this way, makes the review malformed. */
const brokenRequest = fc.oneof(
  fc.record({ operation: fc.oneof(fc.constantFrom('create', 'PATCH', '', 'Create', 'update', 'DELETE '), junk) }),
  fc.record({ uid: fc.oneof(fc.constant(''), fc.integer(), fc.constant(null)) }),
  fc.record({ kind: fc.oneof(junk, fc.record({ group: junk, kind: junk })) }),
  fc.record({
    object: fc.oneof(fc.constant(null), fc.string(), fc.integer(), fc.record({ spec: fc.oneof(junk, fc.record({ containers: junk })) })),
  }),
  fc.record({
    object: fc.record({
      spec: fc.record({
        containers: fc.array(
          fc.record({ name: fc.string(), image: fc.oneof(fc.integer(), fc.constant(null), fc.object({ maxDepth: 0 })) }),
          { minLength: 1, maxLength: 3 },
        ),
      }),
    }),
  }),
);

const malformedAdmission = fc.tuple(brokenRequest, fc.constantFrom('CREATE', 'UPDATE')).map(([broken, operation]) => ({
  path: '/admission/validate',
  body: JSON.stringify({ ...pod, request: { ...pod.request, operation, ...broken } }),
}));

const malformedImageReview = fc
  .oneof(
    fc.record({
      apiVersion: junk,
      kind: fc.constant('ImageReview'),
      spec: fc.record({ containers: fc.constant([{ image: 'quay.io/team/app:v1' }]) }),
    }),
    fc.record({
      apiVersion: fc.constant('imagepolicy.k8s.io/v1alpha1'),
      kind: fc.constant('ImageReview'),
      spec: fc.oneof(junk, fc.record({ containers: junk })),
    }),
    fc.record({
      apiVersion: fc.constant('imagepolicy.k8s.io/v1alpha1'),
      kind: fc.constant('ImageReview'),
      spec: fc.record({ containers: fc.array(fc.record({ image: fc.oneof(fc.integer(), fc.constant(null)) }), { minLength: 1 }) }),
    }),
  )
  .map((body) => ({ path: '/admission/imagereview', body: JSON.stringify(body) }));

const notJson = fc.oneof(fc.string(), fc.constant('{'), fc.constant('{"a":'), fc.constant('[1,2'), fc.constant('\u0000'));

const request = fc.oneof(
  fc.record({
    method: fc.constant('POST'),
    target: fc.oneof(malformedAdmission, malformedImageReview),
    type: fc.constant('application/json'),
  }),
  fc.record({
    method: fc.constant('POST'),
    target: fc.record({ path: fc.constantFrom('/admission/validate', '/admission/imagereview'), body: notJson }),
    type: fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'),
  }),
  fc.record({
    method: fc.constant('PUT'),
    target: fc.record({
      path: fc.constant('/images'),
      body: fc.oneof(
        notJson,
        fc
          .record({
            id: fc.oneof(fc.string(), fc.constant('sha256:zz'), junk),
            name: fc.oneof(fc.constant('quay.io/x/y'), junk),
            tags: fc.oneof(junk, fc.array(fc.string())),
          })
          .map((b) => JSON.stringify(b)),
      ),
    }),
    type: fc.constant('application/json'),
  }),
  fc.record({
    method: fc.constantFrom('GET', 'DELETE', 'PATCH', 'OPTIONS'),
    target: fc.record({
      path: fc
        .tuple(
          fc.constantFrom('/images/', '/images?', '/images?cursor=', '/images?limit=', '/images?sort=', '/images?name=', '/', '/health/'),
          fc.string({ unit: 'binary-ascii', maxLength: 80 }),
        )
        .map(([p, s]) => p + encodeURIComponent(s).replace(/%25/g, '%')),
      body: fc.constant(''),
    }),
    type: fc.constant('application/json'),
  }),
);

describe('fuzzed malformed requests', () => {
  it('never answer 5xx, always answer errors as problem+json, never allow a malformed review, and change nothing', async () => {
    const before = await checksum();
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(request, async ({ method, target, type }) => {
        sent++;
        const res = await fetch(base + target.path, {
          method,
          headers: target.body ? { 'content-type': type } : {},
          ...(target.body && method !== 'GET' ? { body: target.body } : {}),
        });
        const text = await res.text();
        expect(res.status, `${method} ${target.path} ${target.body.slice(0, 200)}`).toBeLessThan(500);
        if (res.status >= 400) expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        if (target.path.startsWith('/admission/') && res.status === 200) {
          const answer = JSON.parse(text) as { response?: { allowed: boolean }; status?: { allowed: boolean } };
          expect(answer.response?.allowed ?? answer.status?.allowed, `${target.path} ${target.body.slice(0, 300)}`).toBe(false);
        }
      }),
      { numRuns: 2000, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31) },
    );
    expect(sent).toBeGreaterThanOrEqual(2000);
    expect(await checksum()).toBe(before);
  }, 60_000);
});
