import type { App } from '@platform/http-common';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { connect } from '../src/store/database.js';
import { ImageSql } from '../src/store/image-sql.js';
import { LiveIndex } from '../src/store/live-index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { junk } from './support/junk.js';
import { collectLogLines } from './support/log-lines.js';
import { fixture, PROXY_DIGEST, WEB_DIGEST, workloadFixtures } from './support/fixtures.js';

/**
 * The direct handlers (answered before Fastify, from memory: http-common's direct-routes.ts) of
 * the admission routes and of `GET /images?name=` answer every request exactly as the Fastify
 * routes do, and hand the Fastify routes all they are not sure of. Each request is sent twice to
 * one replica with a fresh in-memory index: once as clients send it, which the direct handler
 * takes, and once in a form only the Fastify route takes. The debug line of each answered request
 * tells which answered it: Fastify's carry the request's id.
 */

let db: TestDatabase;
let app: App;
let index: LiveIndex;
let sql: ReturnType<typeof connect>;
let base: string;
const log = collectLogLines();
const logLines = log.lines;

beforeAll(async () => {
  db = await createTestDatabase();
  // web by name and tag, proxy by digest; busybox is not listed
  await db.sql`INSERT INTO images (id, name, tags) VALUES (${WEB_DIGEST}, 'quay.io/shop/web', ${['v1.4.2', 'latest']})`;
  await db.sql`INSERT INTO images (id, name, tags) VALUES (${PROXY_DIGEST}, 'ghcr.io/shop/proxy-renamed', ${[]})`;
  // older builds of web, whose order by updated_at is neither their ids' nor their creation's
  await db.sql`
    INSERT INTO images (id, name, tags, created_at, updated_at)
    SELECT encode(sha256(n::text::bytea), 'hex'), 'quay.io/shop/web', ARRAY['build-' || n],
           timestamptz '2026-01-01' + make_interval(days => n), timestamptz '2026-06-01' + make_interval(hours => (n * 7) % 12)
    FROM generate_series(1, 12) AS n`;
  sql = connect({ url: db.url, max: 2 });
  index = new LiveIndex(new ImageSql(sql, 2000), { url: db.url }, { outageGraceMs: 0 }).start();
  app = await buildApp({ sql, live: index, logger: { level: 'debug', stream: log.stream }, defaultMetrics: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  await index.ready();
});
afterAll(async () => {
  await app?.close();
  await index?.close();
  await sql?.end({ timeout: 1 });
  await db?.close();
});

interface Answer {
  status: number;
  type: string | null;
  body: string;
}

async function post(route: string, body: string, contentType: string): Promise<Answer> {
  const res = await fetch(`${base}${route}`, { method: 'POST', headers: { 'content-type': contentType }, body });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

/** How many of the requests since the log was cleared the direct handler answered. */
function answeredDirectly(requests: number): number {
  const completed = logLines().filter((l) => l.msg === 'request completed' || l.msg === 'slow request');
  expect(completed).toHaveLength(requests);
  return completed.filter((l) => l.reqId === undefined).length;
}

/** A review posted as the API server posts it (`application/json`), and with a charset, which only the route takes. */
async function bothWays(route: string, body: string): Promise<{ direct: Answer; fastify: Answer; answeredDirectly: number }> {
  log.clear();
  const direct = await post(route, body, 'application/json');
  const fastify = await post(route, body, 'application/json; charset=utf-8');
  return { direct, fastify, answeredDirectly: answeredDirectly(2) };
}

async function get(url: string): Promise<Answer> {
  const res = await fetch(`${base}${url}`);
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

/** `?name=` alone, and with the default sort spelt out, which only the route takes. */
async function lookupBothWays(query: string): Promise<{ direct: Answer; fastify: Answer; answeredDirectly: number }> {
  log.clear();
  const direct = await get(`/images?${query}`);
  const fastify = await get(`/images?${query}&sort=updated_at`);
  return { direct, fastify, answeredDirectly: answeredDirectly(2) };
}

const reviewOf = (image: string) => ({
  apiVersion: 'imagepolicy.k8s.io/v1alpha1',
  kind: 'ImageReview',
  spec: { containers: [{ image }], namespace: 'shop' },
});

describe('admission answered directly, from memory', async () => {
  const workloads = await workloadFixtures();

  const reviews: [string, string, () => Promise<unknown>][] = [
    ...workloads.map((name): [string, string, () => Promise<unknown>] => [`a ${name}`, '/admission/validate', () => fixture(name)]),
    ['an ImageReview', '/admission/imagereview', () => fixture('imagereview')],
    ['an ImageReview of an unlisted image', '/admission/imagereview', async () => reviewOf('evil.example.com/miner:1')],
    ['an ImageReview of an image named in UTF-8', '/admission/imagereview', async () => reviewOf('quay.io/shop/wéb:v1')],
    [
      'an ImageReview of more images than are checked',
      '/admission/imagereview',
      async () => ({ ...reviewOf('x'), spec: { containers: Array(1001).fill({ image: 'quay.io/shop/web:v1.4.2' }) } }),
    ],
    [
      'a DELETE',
      '/admission/validate',
      async () => {
        const review = await fixture('pod');
        review.request.operation = 'DELETE';
        return review;
      },
    ],
    [
      'a kind imagelist cannot check',
      '/admission/validate',
      async () => {
        const review = await fixture('pod');
        review.request.kind = { group: '', version: 'v1', kind: 'Service' };
        return review;
      },
    ],
    ['a review with ?timeout=5s', '/admission/validate?timeout=5s', () => fixture('deployment')],
  ];

  it.each(reviews)('%s: the same answer, given directly', async (_what, route, review) => {
    const { direct, fastify, answeredDirectly } = await bothWays(route, JSON.stringify(await review()));
    expect(direct).toEqual(fastify);
    expect(direct.status).toBe(200);
    expect(answeredDirectly).toBe(1);
  });

  it('denies from the direct handler as the route does, and logs the denial', async () => {
    const { direct } = await bothWays('/admission/validate', JSON.stringify(await fixture('statefulset')));
    expect(JSON.parse(direct.body).response).toMatchObject({ allowed: false, status: { code: 403, reason: 'Forbidden' } });
    const denials = logLines().filter((l) => l.msg === 'admission denied');
    expect(denials).toHaveLength(2);
    const { reqId: _reqId, time: _time, ...fields } = denials.find((l) => l.reqId !== undefined);
    expect(denials.find((l) => l.reqId === undefined)).toMatchObject(fields);
  });

  const notReviews: [string, string, string][] = [
    ['JSON that does not end', '/admission/imagereview', '{"apiVersion":'],
    ['no body', '/admission/validate', ''],
    ['a review of the wrong shape that names its uid', '/admission/validate', '{"request":{"uid":"u-1","kind":7}}'],
    ['a review of the wrong shape without a uid', '/admission/validate', '{"request":{"kind":7}}'],
    ['a prototype key', '/admission/validate', '{"request":{"uid":"u-2","__proto__":{"uid":"forged"}}}'],
    ['an ImageReview of the wrong shape', '/admission/imagereview', '{"spec":{"containers":{}}}'],
    ['a body nested too deep', '/admission/imagereview', '{"spec":' + '['.repeat(200_000) + ']'.repeat(200_000) + '}'],
  ];

  it.each(notReviews)('%s: handed to the route, which answers it', async (_what, route, body) => {
    const { direct, fastify, answeredDirectly } = await bothWays(route, body);
    expect(direct).toEqual(fastify);
    expect(answeredDirectly).toBe(0);
  });

  it('hands the route a body sent in chunks, or without Content-Length', async () => {
    const review = JSON.stringify(await fixture('pod'));
    log.clear();
    const res = await fetch(`${base}/admission/validate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode(review.slice(0, 100)));
          c.enqueue(new TextEncoder().encode(review.slice(100)));
          c.close();
        },
      }),
      duplex: 'half',
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { response: { uid: string } }).response.uid).toBe(JSON.parse(review).request.uid);
    expect(logLines().find((l) => l.msg === 'request completed')?.reqId).toBeDefined();
  });

  // Reviews with one field replaced by anything JSON can hold: whatever the direct handler does
  // with one (answers it, or hands it on), the answer is the route's.
  it('answers generated reviews, valid and not, as the route does', async () => {
    const pod = await fixture('pod');
    const image = await fixture('imagereview');
    const anything = junk(2);
    const replaced = (review: any, at: readonly string[], value: unknown) => {
      const copy = structuredClone(review);
      let node = copy;
      for (const key of at.slice(0, -1)) node = node[key];
      node[at.at(-1)!] = value;
      return copy;
    };
    const validateCase = fc
      .tuple(
        fc.constantFrom(
          ['request', 'uid'],
          ['request', 'operation'],
          ['request', 'kind'],
          ['request', 'namespace'],
          ['request', 'object', 'spec'],
          ['apiVersion'],
          ['request', 'object', 'spec', 'containers', '0', 'image'],
        ),
        anything,
      )
      .map(([at, value]) => ['/admission/validate', replaced(pod, at, value)] as const);
    const imageCase = fc
      .tuple(
        fc.constantFrom(
          ['spec', 'containers'],
          ['spec', 'namespace'],
          ['kind'],
          ['spec', 'containers', '0', 'image'],
          ['spec', 'containers', '0'],
        ),
        anything,
      )
      .map(([at, value]) => ['/admission/imagereview', replaced(image, at, value)] as const);
    await fc.assert(
      fc.asyncProperty(fc.oneof(validateCase, imageCase), async ([route, review]) => {
        const { direct, fastify } = await bothWays(route, JSON.stringify(review));
        expect(direct).toEqual(fastify);
      }),
      { numRuns: 300 },
    );
  });
});

describe('GET /images?name= answered directly, from memory', () => {
  it.each([
    ['a listed name', 'name=quay.io%2Fshop%2Fweb'],
    ['a listed name, its slashes not encoded', 'name=ghcr.io/shop/proxy-renamed'],
    ['a name nothing is listed under', 'name=quay.io%2Fshop%2Fnothing'],
  ])('%s: the same answer, given directly', async (_what, query) => {
    const { direct, fastify, answeredDirectly } = await lookupBothWays(query);
    expect(direct).toEqual(fastify);
    expect(direct.status).toBe(200);
    expect(answeredDirectly).toBe(1);
  });

  it.each([
    ['an empty name', 'name='],
    ['a name that is not one', 'name=Quay.io%2FShop'],
    ['a name given twice', 'name=a&name=b'],
    ['a name broken in its encoding', 'name=%E0%A4%A'],
  ])('%s: handed to the route, which answers it', async (_what, query) => {
    const { direct, fastify, answeredDirectly } = await lookupBothWays(query);
    expect(direct).toEqual(fastify);
    expect(answeredDirectly).toBe(0);
  });

  it('leaves other lists to the route', async () => {
    log.clear();
    for (const url of ['/images', '/images?sort=name', '/images?name=quay.io%2Fshop%2Fweb&limit=1'])
      expect((await get(url)).status).toBe(200);
    expect(answeredDirectly(3)).toBe(0);
  });

  it('answers generated names as the route does', async () => {
    const name = fc.oneof(
      fc.string(),
      fc.stringMatching(/^[a-z0-9./_:-]{1,40}$/),
      fc.constantFrom('quay.io/shop/web', 'QUAY.io/shop/web', 'docker.io/library/busybox', 'busybox'),
    );
    await fc.assert(
      fc.asyncProperty(name, async (n) => {
        const { direct, fastify } = await lookupBothWays(`name=${encodeURIComponent(n)}`);
        expect(direct).toEqual(fastify);
      }),
      { numRuns: 200 },
    );
  });
});
