import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { App } from '@platform/http-common';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { DIGEST_A, DIGEST_B, DIGEST_C, testApp } from '../support/app.js';

let db: TestDatabase;
let app: App;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await testApp(db.sql);
});
afterAll(async () => {
  await app?.close();
  await db?.close();
});
beforeEach(async () => {
  await db.sql`TRUNCATE images`;
});

const put = (payload: unknown) => app.inject({ method: 'PUT', url: '/images', payload: payload as object });
const count = async () => (await db.sql`SELECT count(*)::int AS n FROM images`)[0]!.n as number;

describe('PUT /images', () => {
  it('creates an image and answers it in the original field order', async () => {
    const res = await put({ id: DIGEST_A, name: 'quay.io/foo/nginx', tags: ['latest', 'v1.0'] });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = res.json();
    expect(Object.keys(body)).toEqual(['created_at', 'updated_at', 'id', 'name', 'tags']);
    expect(body).toMatchObject({ id: DIGEST_A, name: 'quay.io/foo/nginx', tags: ['latest', 'v1.0'] });
    expect(body.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(body.updated_at).toBe(body.created_at);
  });

  it('replaces the tags of an existing image, keeps its name, and bumps updated_at', async () => {
    const first = (await put({ id: DIGEST_A, name: 'quay.io/foo/nginx', tags: ['v1'] })).json();
    const res = await put({ id: DIGEST_A, name: 'quay.io/other/name', tags: ['v2', 'latest'] });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.name).toBe('quay.io/foo/nginx');
    expect(body.tags).toEqual(['v2', 'latest']);
    expect(body.created_at).toBe(first.created_at);
    expect(Date.parse(body.updated_at)).toBeGreaterThan(Date.parse(first.updated_at));
    expect(await count()).toBe(1);
  });

  it('gives the write that wins a race of PUTs of one id the latest updated_at', async () => {
    await put({ id: DIGEST_A, name: 'a/b', tags: ['v0'] });
    for (let round = 0; round < 10; round++) {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, c) => put({ id: DIGEST_A, name: 'a/b', tags: [`r${round}-c${c}`] })),
      );
      const stored = (await app.inject({ method: 'GET', url: `/images/${DIGEST_A}` })).json();
      for (const answer of answers) expect(answer.json().updated_at <= stored.updated_at).toBe(true);
    }
  });

  it('leaves tags and updated_at alone when tags are absent or null, and clears them with []', async () => {
    const first = (await put({ id: DIGEST_A, name: 'a/b', tags: ['v1'] })).json();
    for (const payload of [
      { id: DIGEST_A, name: 'a/b' },
      { id: DIGEST_A, name: 'a/b', tags: null },
    ]) {
      const body = (await put(payload)).json();
      expect(body.tags).toEqual(['v1']);
      expect(body.updated_at).toBe(first.updated_at);
    }
    const cleared = (await put({ id: DIGEST_A, name: 'a/b', tags: [] })).json();
    expect(cleared.tags).toEqual([]);
  });

  it('creates with no tags as an empty list, and drops duplicate tags', async () => {
    expect((await put({ id: DIGEST_A, name: 'a/b' })).json().tags).toEqual([]);
    expect((await put({ id: DIGEST_B, name: 'a/b', tags: ['x', 'y', 'x'] })).json().tags).toEqual(['x', 'y']);
  });

  it('stores every id form as the bare digest', async () => {
    expect((await put({ id: `sha256:${DIGEST_A}`, name: 'nginx' })).json().id).toBe(DIGEST_A);
    expect((await put({ id: `quay.io/foo/app@sha256:${DIGEST_B}`, name: 'quay.io/foo/app' })).json().id).toBe(DIGEST_B);
    expect((await put({ id: DIGEST_A, name: 'nginx', tags: ['t'] })).json().tags).toEqual(['t']);
    expect(await count()).toBe(2);
  });

  it('accepts a repodigest whose name normalises to the body name', async () => {
    const res = await put({ id: `docker.io/library/nginx@sha256:${DIGEST_A}`, name: 'nginx' });
    expect(res.statusCode).toBe(200);
  });

  const invalid: [string, unknown, string][] = [
    ['id not hex', { id: 'xyz', name: 'a/b' }, 'body.id'],
    ['id uppercase hex', { id: DIGEST_A.toUpperCase(), name: 'a/b' }, 'body.id'],
    ['id short', { id: DIGEST_A.slice(1), name: 'a/b' }, 'body.id'],
    ['id with other algorithm', { id: `sha512:${DIGEST_A}`, name: 'a/b' }, 'body.id'],
    ['id missing', { name: 'a/b' }, 'body.id'],
    ['name missing', { id: DIGEST_A }, 'body.name'],
    ['name with uppercase path', { id: DIGEST_A, name: 'foo/Nginx' }, 'body.name'],
    ['name with a tag', { id: DIGEST_A, name: 'nginx:latest' }, 'body.name'],
    ['name with double slash', { id: DIGEST_A, name: 'foo//bar' }, 'body.name'],
    ['name ending in a separator', { id: DIGEST_A, name: 'foo/bar-' }, 'body.name'],
    ['name too long', { id: DIGEST_A, name: `a/${'b'.repeat(300)}` }, 'body.name'],
    ['name not a string', { id: DIGEST_A, name: 42 }, 'body.name'],
    ['tag starting with a dot', { id: DIGEST_A, name: 'a/b', tags: ['.v1'] }, 'body.tags.0'],
    ['tag too long', { id: DIGEST_A, name: 'a/b', tags: ['v'.repeat(129)] }, 'body.tags.0'],
    ['tag with a slash', { id: DIGEST_A, name: 'a/b', tags: ['ok', 'a/b'] }, 'body.tags.1'],
    ['tags not a list', { id: DIGEST_A, name: 'a/b', tags: 'latest' }, 'body.tags'],
    ['too many tags', { id: DIGEST_A, name: 'a/b', tags: Array.from({ length: 257 }, (_, i) => `t${i}`) }, 'body.tags'],
    ['repodigest naming another image', { id: `quay.io/x/y@sha256:${DIGEST_A}`, name: 'quay.io/x/z' }, 'body.id'],
  ];
  it.each(invalid)('rejects %s with 400 naming the field and writes nothing', async (_what, payload, field) => {
    await put({ id: DIGEST_C, name: 'keep/me', tags: ['v1'] });
    const res = await put(payload);
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = res.json();
    expect(body).toMatchObject({ status: 400, title: 'Bad Request' });
    expect(body.errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(body.detail).toContain(field);
    expect(await count()).toBe(1);
    expect((await app.inject(`/images/${DIGEST_C}`)).json().tags).toEqual(['v1']);
  });

  it('rejects a body that is not JSON, whatever its declared type, or too large', async () => {
    const notJson = await app.inject({ method: 'PUT', url: '/images', payload: '{"id":', headers: { 'content-type': 'application/json' } });
    expect(notJson.statusCode).toBe(400);
    expect(notJson.json().detail).toMatch(/not valid JSON/);
    const form = await app.inject({
      method: 'PUT',
      url: '/images',
      payload: 'id=1',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.statusCode).toBe(400);
    expect(form.json().detail).toMatch(/not valid JSON/);
    const huge = await put({ id: DIGEST_A, name: 'a/b', tags: ['x'], pad: 'p'.repeat(70_000) });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().status).toBe(413);
    expect(await count()).toBe(0);
  });

  it('reads the body as JSON whatever its declared type, as the original did (`curl -d` says form-urlencoded)', async () => {
    const send = (headers: Record<string, string>, id: string) =>
      app.inject({ method: 'PUT', url: '/images', headers, payload: JSON.stringify({ id, name: 'quay.io/foo/nginx', tags: ['v1'] }) });
    expect((await send({ 'content-type': 'application/x-www-form-urlencoded' }, DIGEST_A)).statusCode).toBe(200);
    expect((await send({ 'content-type': 'text/plain' }, DIGEST_B)).statusCode).toBe(200);
    expect((await send({}, DIGEST_C)).statusCode).toBe(200);
    expect(await count()).toBe(3);
    // a type Fastify cannot parse is no type, not a 415
    for (const type of ['json', '', ';']) expect((await send({ 'content-type': type }, DIGEST_A)).statusCode, type).toBe(200);
    expect((await app.inject(`/images/${DIGEST_B}`)).json()).toMatchObject({ name: 'quay.io/foo/nginx', tags: ['v1'] });
  });
});

describe('GET /images', () => {
  beforeEach(async () => {
    // Distinct, known timestamps so every sort key gives a different order.
    await db.sql`INSERT INTO images (id, name, tags, created_at, updated_at) VALUES
      (${DIGEST_A}, 'quay.io/foo/nginx', '{latest,v1.0}', '2017-10-27T16:51:06.698062Z', '2017-10-27T16:51:06.698062Z'),
      (${DIGEST_B}, 'quay.io/bar/proxy', '{v1.2.3}',      '2017-10-20T15:57:05.948595Z', '2017-10-28T10:04:56.426671Z'),
      (${DIGEST_C}, 'myorg/apache2',     '{}',            '2017-10-29T17:07:33.861542Z', '2017-10-29T17:07:44.067523Z')`;
  });
  const ids = async (url: string) => (await app.inject(url)).json().map((i: { id: string }) => i.id);

  it('lists newest updated first by default, with the timestamps the original rendered', async () => {
    const res = await app.inject('/images');
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.map((i: { id: string }) => i.id)).toEqual([DIGEST_C, DIGEST_B, DIGEST_A]);
    expect(body[2]).toEqual({
      created_at: '2017-10-27T16:51:06.698062Z',
      updated_at: '2017-10-27T16:51:06.698062Z',
      id: DIGEST_A,
      name: 'quay.io/foo/nginx',
      tags: ['latest', 'v1.0'],
    });
  });

  it('sorts descending by each key', async () => {
    expect(await ids('/images?sort=updated_at')).toEqual([DIGEST_C, DIGEST_B, DIGEST_A]);
    expect(await ids('/images?sort=created_at')).toEqual([DIGEST_C, DIGEST_A, DIGEST_B]);
    expect(await ids('/images?sort=name')).toEqual([DIGEST_A, DIGEST_B, DIGEST_C]);
    expect(await ids('/images?sort=id')).toEqual([DIGEST_C, DIGEST_A, DIGEST_B]);
  });

  it('answers an unknown sort with one error naming the allowed values', async () => {
    const res = await app.inject('/images?sort=bogus');
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([{ field: 'query.sort', message: 'must be one of created_at, updated_at, name, id' }]);
  });

  it('filters by exact name', async () => {
    expect(await ids('/images?name=quay.io/bar/proxy')).toEqual([DIGEST_B]);
    expect(await ids('/images?name=quay.io/bar')).toEqual([]);
    expect(await ids('/images?name=proxy')).toEqual([]);
  });

  it('answers an empty list as []', async () => {
    await db.sql`TRUNCATE images`;
    const res = await app.inject('/images');
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe('[]');
  });

  it('pages with ?limit= and a Link header, in the same order as the full list', async () => {
    for (let i = 0; i < 4; i++) {
      await db.sql`INSERT INTO images (id, name, tags, created_at, updated_at)
        VALUES (${String(i).repeat(64)}, 'quay.io/foo/nginx', '{}', '2017-10-27T16:51:06.698062Z', '2017-10-27T16:51:06.698062Z')`;
    }
    for (const sort of ['updated_at', 'created_at', 'name', 'id']) {
      const all = await ids(`/images?sort=${sort}`);
      expect(all).toHaveLength(7);
      const seen: string[] = [];
      let url: string | undefined = `/images?sort=${sort}&limit=2`;
      while (url) {
        const res: Awaited<ReturnType<typeof app.inject>> = await app.inject(url);
        expect(res.statusCode).toBe(200);
        const page = res.json();
        expect(page.length).toBeLessThanOrEqual(2);
        seen.push(...page.map((i: { id: string }) => i.id));
        url = /^<([^>]+)>; rel="next"$/.exec(String(res.headers.link ?? ''))?.[1];
      }
      expect(seen).toEqual(all);
    }
    const named = await app.inject('/images?name=quay.io/foo/nginx&limit=3');
    expect(named.json()).toHaveLength(3);
    expect(named.headers.link).toContain('name=quay.io%2Ffoo%2Fnginx');
  });

  it('rejects bad page parameters with 400', async () => {
    expect((await app.inject('/images?limit=0')).json().errors[0].field).toBe('query.limit');
    expect((await app.inject('/images?limit=1001')).statusCode).toBe(400);
    expect((await app.inject('/images?limit=2&cursor=garbage')).json().errors[0].field).toBe('query.cursor');
    const link = String((await app.inject('/images?limit=1&sort=name')).headers.link);
    const cursor = /cursor=([^&>]+)/.exec(link)![1];
    const mismatch = await app.inject(`/images?limit=1&sort=id&cursor=${cursor}`);
    expect(mismatch.statusCode).toBe(400);
    expect(mismatch.json().detail).toMatch(/sort=name/);
  });

  it('rejects an unknown sort key and an invalid name with 400', async () => {
    const sort = await app.inject('/images?sort=size');
    expect(sort.statusCode).toBe(400);
    expect(sort.json().errors[0].field).toBe('query.sort');
    const name = await app.inject('/images?name=UPPER');
    expect(name.statusCode).toBe(400);
    expect(name.json().errors[0].field).toBe('query.name');
  });
});

describe('GET /images/:id', () => {
  beforeEach(async () => {
    await put({ id: DIGEST_A, name: 'quay.io/foo/nginx', tags: ['latest'] });
    await put({ id: DIGEST_B, name: 'nginx', tags: ['1.25'] });
  });

  it.each([
    ['bare digest', DIGEST_A],
    ['sha256: digest', `sha256:${DIGEST_A}`],
    ['URL-encoded sha256: digest', `sha256%3A${DIGEST_A}`],
    ['repodigest, URL-encoded', encodeURIComponent(`quay.io/foo/nginx@sha256:${DIGEST_A}`)],
    ['repodigest, raw', `quay.io/foo/nginx@sha256:${DIGEST_A}`],
  ])('finds an image by %s', async (_what, id) => {
    const res = await app.inject(`/images/${id}`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: DIGEST_A, name: 'quay.io/foo/nginx', tags: ['latest'] });
  });

  it('matches a repodigest by normalised name', async () => {
    expect((await app.inject(`/images/docker.io/library/nginx@sha256:${DIGEST_B}`)).statusCode).toBe(200);
    expect((await app.inject(`/images/quay.io/foo/other@sha256:${DIGEST_A}`)).statusCode).toBe(404);
  });

  it('answers 404 with a JSON error for an unknown id', async () => {
    const res = await app.inject(`/images/${DIGEST_C}`);
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json()).toMatchObject({ status: 404, title: 'Not Found' });
    expect(res.json().detail).toContain(DIGEST_C);
  });

  it('answers 400 naming params.id for a malformed id', async () => {
    const res = await app.inject('/images/not-a-digest');
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([{ field: 'params.id', message: 'is not a valid image id' }]);
  });
});

describe('DELETE /images/:id', () => {
  beforeEach(async () => {
    await put({ id: DIGEST_A, name: 'quay.io/foo/nginx', tags: ['latest'] });
    await put({ id: DIGEST_B, name: 'quay.io/foo/proxy' });
  });

  it('deletes by digest and answers 204 with no body', async () => {
    const res = await app.inject({ method: 'DELETE', url: `/images/${DIGEST_A}` });
    expect(res.statusCode).toBe(204);
    expect(res.body).toBe('');
    expect((await app.inject(`/images/${DIGEST_A}`)).statusCode).toBe(404);
    expect(await count()).toBe(1);
  });

  it('deletes by repodigest, encoded or not', async () => {
    expect(
      (await app.inject({ method: 'DELETE', url: `/images/${encodeURIComponent(`quay.io/foo/nginx@sha256:${DIGEST_A}`)}` })).statusCode,
    ).toBe(204);
    expect((await app.inject({ method: 'DELETE', url: `/images/quay.io/foo/proxy@sha256:${DIGEST_B}` })).statusCode).toBe(204);
    expect(await count()).toBe(0);
  });

  it('leaves an image alone when the repodigest names another image', async () => {
    expect((await app.inject({ method: 'DELETE', url: `/images/quay.io/foo/other@sha256:${DIGEST_A}` })).statusCode).toBe(204);
    expect(await count()).toBe(2);
  });

  it('ignores a body and its content type, as the original did (CI clients send content-type: application/json on every request)', async () => {
    const del = (id: string, headers: Record<string, string>, payload?: string) =>
      app.inject({ method: 'DELETE', url: `/images/${id}`, headers, ...(payload === undefined ? {} : { payload }) });
    expect((await del(DIGEST_A, { 'content-type': 'application/json' })).statusCode).toBe(204);
    expect((await del(DIGEST_B, { 'content-type': 'text/plain' }, 'whatever')).statusCode).toBe(204);
    expect(await count()).toBe(0);
    await put({ id: DIGEST_A, name: 'quay.io/foo/nginx' });
    expect((await del(DIGEST_A, { 'content-type': 'application/json' }, '{"not": "json"')).statusCode).toBe(204);
    expect(await count()).toBe(0);
    for (const type of ['', 'a', ';', '/']) {
      await put({ id: DIGEST_A, name: 'quay.io/foo/nginx' });
      expect((await del(DIGEST_A, { 'content-type': type }, 'x')).statusCode, type).toBe(204);
      expect(await count()).toBe(0);
    }
    // a PUT needs its body
    const empty = await app.inject({ method: 'PUT', url: '/images', headers: { 'content-type': 'application/json' } });
    expect(empty.statusCode).toBe(400);
  });

  it('answers 204 for an unknown id, as the original did', async () => {
    expect((await app.inject({ method: 'DELETE', url: `/images/${DIGEST_C}` })).statusCode).toBe(204);
    expect(await count()).toBe(2);
  });

  it('answers 400 for a malformed id and deletes nothing', async () => {
    const res = await app.inject({ method: 'DELETE', url: '/images/abc' });
    expect(res.statusCode).toBe(400);
    expect(await count()).toBe(2);
  });
});

describe('health, metrics, docs', () => {
  it('answers /health/ping, /health/ready and /health/live with 200 and no body, as the original', async () => {
    for (const url of ['/health/ping', '/health/ready', '/health/live']) {
      const res = await app.inject(url);
      expect(res.statusCode, url).toBe(200);
      expect(res.body, url).toBe('');
      expect(res.headers['content-length'], url).toBe('0');
    }
  });

  it('counts requests by route on /metrics', async () => {
    await app.inject(`/images/${DIGEST_A}`);
    const res = await app.inject('/metrics');
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/images\/\*",status_code="404"\} \d+/);
  });

  it('publishes an OpenAPI document of every route', async () => {
    const doc = (await app.inject('/docs/json')).json();
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/images', '/images/{id}', '/health/ping']));
    // the wildcard route's parameter, named as the spec names it
    for (const method of ['get', 'delete']) {
      expect(doc.paths['/images/{id}'][method].parameters).toEqual([expect.objectContaining({ name: 'id', in: 'path', required: true })]);
    }
    expect(doc.paths['/images'].put.security).toEqual([{ bearer: [] }]);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await app.inject('/nope');
    expect(res.statusCode).toBe(404);
    expect(res.json().status).toBe(404);
  });
});

describe('crafted cursors', () => {
  it('are a 400 naming query.cursor, never a database error', async () => {
    const app = await testApp(db.sql);
    const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const hexId = 'a'.repeat(64);
    for (const [sort, cursor] of [
      ['updated_at', enc(['updated_at', 'infinity', hexId])],
      ['updated_at', enc(['updated_at', '99999-01-01T00:00:00.000000Z', hexId])],
      ['updated_at', enc(['updated_at', '0000-01-01T00:00:00.000000Z', hexId])],
      ['created_at', enc(['created_at', '2020-13-01T00:00:00.000000Z', hexId])],
      ['created_at', enc(['created_at', '2020-02-31T00:00:00.000000Z', hexId])],
      ['created_at', enc(['created_at', '2020-01-01 00:00:00', hexId])],
      ['name', enc(['name', 'UPPER/Case', hexId])],
      ['name', enc(['name', `a${'\u0000'}b`, hexId])],
      ['id', enc(['id', 'zz', hexId])],
      ['id', enc(['id', hexId, 'b'.repeat(64)])],
      ['id', 'not-base64!'],
      ['id', enc({ a: 1 })],
    ] as const) {
      const res = await app.inject(`/images?sort=${sort}&limit=5&cursor=${encodeURIComponent(cursor)}`);
      expect(res.statusCode, `${sort} ${cursor}`).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json().errors[0].field).toBe('query.cursor');
    }
    await app.close();
  });
});
