import Type from 'typebox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, HttpProblem, type App } from '../src/index.js';

class DependencyDown extends Error {
  code = 'DOWN';
}

let app: App;
beforeAll(async () => {
  app = await createApp({
    metricsPath: '/metrics',
    defaultMetrics: false,
    bodyLimit: 1024,
    openapi: { title: 'test', version: '1.0.0' },
    classifyError: (err) => (err instanceof DependencyDown ? new HttpProblem(503, 'dependency down') : undefined),
  });
  app.post('/things', { schema: { body: Type.Object({ n: Type.Integer(), tags: Type.Array(Type.String()) }) } }, async (req) => req.body);
  app.post(
    '/nullable',
    {
      schema: {
        body: Type.Object({
          tags: Type.Optional(Type.Union([Type.Array(Type.String({ minLength: 1 })), Type.Null()])),
          kind: Type.Optional(Type.Union([Type.Union([Type.Literal('a'), Type.Literal('b')]), Type.Literal(''), Type.Null()])),
        }),
      },
    },
    async (req) => req.body,
  );
  app.get('/things', { schema: { querystring: Type.Object({ limit: Type.Integer({ maximum: 10 }) }) } }, async (req) => ({
    limit: req.query.limit,
  }));
  app.get('/boom', async () => {
    throw new Error('secret internals: password=hunter2');
  });
  app.get('/down', async () => {
    throw new DependencyDown('connect ECONNREFUSED 10.0.0.1:5432');
  });
  await app.ready();
});
afterAll(() => app.close());

describe('createApp', () => {
  it('answers a method a known path does not have 405 with Allow, and a path it does not know 404', async () => {
    for (const url of ['/things', '/things/?limit=1']) {
      const res = await app.inject({ method: 'DELETE', url });
      expect(res.statusCode, url).toBe(405);
      expect(res.headers.allow).toBe('GET, HEAD, POST');
      expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(res.json()).toMatchObject({
        status: 405,
        detail: `DELETE is not allowed on ${url.split('?')[0]}; it allows GET, HEAD, POST.`,
      });
    }
    const unknown = await app.inject({ method: 'DELETE', url: '/nothing/here' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers.allow).toBeUndefined();
    expect(unknown.json().detail).toBe('No route for DELETE /nothing/here.');
  });

  it('validates bodies strictly: no type coercion', async () => {
    const res = await app.inject({ method: 'POST', url: '/things', payload: { n: '1', tags: 'a' } });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors[0].field).toBe('body.n');
    expect((await app.inject({ method: 'POST', url: '/things', payload: { n: 1, tags: ['a'] } })).json()).toEqual({ n: 1, tags: ['a'] });
  });

  it('refuses a key that names a prototype, naming where it is, and still says when JSON is not JSON', async () => {
    const post = async (payload: string, contentType = 'application/json') =>
      app.inject({ method: 'POST', url: '/things', payload, headers: { 'content-type': contentType } });
    const cases: [string, string][] = [
      ['{"__proto__":{"n":1},"n":1,"tags":[]}', 'body.__proto__'],
      ['{"n":1,"tags":[{"a":[{"__proto__":null}]}]}', 'body.tags.0.a.0.__proto__'],
      ['{"n":1,"tags":[],"x":{"constructor":{"prototype":{"polluted":true}}}}', 'body.x.constructor.prototype'],
      ['{"n":1,"tags":[],"\\u005f_proto__":{}}', 'body.__proto__'],
    ];
    for (const [payload, field] of cases) {
      for (const contentType of ['application/json', 'application/json; charset=utf-8']) {
        const res = await post(payload, contentType);
        expect(res.statusCode, payload).toBe(400);
        expect(res.json().errors, payload).toEqual([{ field, message: expect.stringMatching(/prototype/) }]);
        expect(res.json().detail, payload).toBe(`${field} ${res.json().errors[0].message}`);
      }
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // A constructor that holds no prototype is data like any other.
    expect((await post('{"n":1,"tags":[],"constructor":{"name":"x"}}')).statusCode).toBe(200);
    expect((await post('{"n":1,')).json()).toMatchObject({
      detail: 'The request body is not valid JSON.',
      errors: [{ field: 'body', message: 'is not valid JSON' }],
    });
    expect((await post('')).json()).toMatchObject({
      detail: expect.stringMatching(/empty/),
      errors: [{ field: 'body', message: 'is empty' }],
    });
    expect((await post('{"n":1,"tags":["a"]}')).json()).toEqual({ n: 1, tags: ['a'] });
  });

  it('names what is wrong with the value of a field that may be null, not also "must be null"', async () => {
    const errors = async (payload: unknown) =>
      (await app.inject({ method: 'POST', url: '/nullable', payload: payload as object })).json().errors;
    expect(await errors({ tags: 'a' })).toEqual([{ field: 'body.tags', message: 'must be array' }]);
    expect(await errors({ tags: ['a', ''] })).toEqual([{ field: 'body.tags.1', message: 'must NOT have fewer than 1 characters' }]);
    expect(await errors({ kind: 'c' })).toEqual([{ field: 'body.kind', message: 'must be one of a, b' }]);
    for (const ok of [{ tags: null, kind: null }, { kind: '' }, { tags: ['a'], kind: 'b' }]) {
      expect((await app.inject({ method: 'POST', url: '/nullable', payload: ok })).statusCode).toBe(200);
    }
  });

  it('coerces query strings to the schema types', async () => {
    expect((await app.inject('/things?limit=5')).json()).toEqual({ limit: 5 });
    expect((await app.inject('/things?limit=50')).json().errors[0]).toEqual({ field: 'query.limit', message: 'must be <= 10' });
  });

  it('hides the cause of a 500', async () => {
    const res = await app.inject('/boom');
    expect(res.statusCode).toBe(500);
    expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(res.json()).toEqual({
      type: 'about:blank',
      title: 'Internal Server Error',
      status: 500,
      detail: 'The server could not handle the request.',
    });
  });

  it('lets the service classify dependency errors', async () => {
    const res = await app.inject('/down');
    expect(res.statusCode).toBe(503);
    expect(res.body).not.toContain('10.0.0.1');
  });

  it('answers oversized bodies with 413 and other media types with 415', async () => {
    const tooLarge = await app.inject({ method: 'POST', url: '/things', payload: { n: 1, tags: ['x'.repeat(2000)] } });
    expect([tooLarge.statusCode, tooLarge.json().errors]).toEqual([
      413,
      [{ field: 'body', message: 'is larger than this service accepts' }],
    ]);
    const notJson = await app.inject({ method: 'POST', url: '/things', payload: 'n=1', headers: { 'content-type': 'text/plain' } });
    expect([notJson.statusCode, notJson.json().errors]).toEqual([
      415,
      [{ field: 'headers.content-type', message: 'must be application/json' }],
    ]);
  });

  it('exports request metrics by route pattern', async () => {
    await app.inject('/things?limit=1');
    const text = (await app.inject('/metrics')).body;
    expect(text).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/things",status_code="200"\} 2/);
  });
});
