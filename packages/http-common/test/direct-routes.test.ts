import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import Type from 'typebox';
import { afterEach, describe, expect, it } from 'vitest';
import { bodyReadBefore, createApp, plainJsonBody, type App } from '../src/index.js';

/** A route with a direct handler that answers `{"n":<even>}` itself and passes everything else to the route. */
async function appWithDirectRoute(opts: { slowRequestMs?: number } = {}): Promise<{ app: App; base: string; lines: () => any[] }> {
  const out: string[] = [];
  const stream = new Writable({ write: (chunk, _enc, done) => (out.push(String(chunk)), done()) });
  const app = await createApp({
    metricsPath: '/metrics',
    defaultMetrics: false,
    logger: { level: 'debug', stream },
    openapi: { title: 'test', version: '1.0.0' },
    ...opts,
  });
  app.post('/double', { preParsing: bodyReadBefore, schema: { body: Type.Object({ n: Type.Integer() }) } }, async (request) => ({
    doubled: request.body.n * 2,
    by: 'route',
  }));
  app.answerDirectly('POST', '/double', (request, _response, exchange) => {
    if (request.headers['x-throw'] !== undefined) throw new Error('a fault before the body');
    if (!plainJsonBody(request, 1024)) return exchange.pass();
    exchange.readBody((body) => {
      if (body.toString() === '"throw"') throw new Error('a fault of the direct handler');
      let n: unknown;
      try {
        n = JSON.parse(body.toString('utf8')).n;
      } catch {
        n = undefined;
      }
      if (typeof n === 'number' && n % 2 === 0) exchange.sendJson(200, JSON.stringify({ doubled: n * 2, by: 'direct' }));
      else exchange.pass(body);
    });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  apps.push(app);
  const lines = () =>
    out
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  return { app, base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, lines };
}

const apps: App[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

const post = async (url: string, body: string, contentType = 'application/json') => {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body });
  return { status: res.status, json: (await res.json()) as Record<string, unknown>, connection: res.headers.get('connection') };
};

describe('direct routes', () => {
  it('answers what the handler takes, and Fastify the rest: before the body was read, or with the body the handler read', async () => {
    const { base } = await appWithDirectRoute();
    expect((await post(`${base}/double`, '{"n":2}')).json).toEqual({ doubled: 4, by: 'direct' });
    expect((await post(`${base}/double?x=1`, '{"n":4}')).json).toEqual({ doubled: 8, by: 'direct' });
    // read, then passed on: the route reads the same body
    expect((await post(`${base}/double`, '{"n":3}')).json).toEqual({ doubled: 6, by: 'route' });
    const notJson = await post(`${base}/double`, '{"n":');
    expect(notJson.status).toBe(400);
    expect(notJson.json.detail).toBe('The request body is not valid JSON.');
    // not read: another content type
    expect((await post(`${base}/double`, '{"n":2}', 'application/json; charset=utf-8')).json).toEqual({ doubled: 4, by: 'route' });
    // a body over the handler's limit, passed on unread
    expect((await post(`${base}/double`, JSON.stringify({ n: 2, pad: 'x'.repeat(2048) }))).json).toEqual({ doubled: 4, by: 'route' });
    // another method or path is Fastify's
    expect((await fetch(`${base}/double`)).status).toBe(405);
    expect((await fetch(`${base}/double/more`, { method: 'POST' })).status).toBe(404);
  });

  it('hands the request to the route when the direct handler throws, and logs it', async () => {
    const { base, lines } = await appWithDirectRoute();
    const res = await post(`${base}/double`, '"throw"');
    // the route read the same body: not the object its schema wants
    expect(res.status).toBe(400);
    expect(res.json.detail).toBe('body must be object');
    expect(lines().find((l) => l.msg === 'direct handler failed; the route answers')).toMatchObject({
      level: 50,
      err: { message: 'a fault of the direct handler' },
    });
    expect((await post(`${base}/double`, '{"n":2}')).json).toEqual({ doubled: 4, by: 'direct' });
    const before = await fetch(`${base}/double`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-throw': '1' },
      body: '{"n":2}',
    });
    expect(await before.json()).toEqual({ doubled: 4, by: 'route' });
  });

  it('records a direct answer in the latency metric and the access log, as a routed one', async () => {
    const { base, lines } = await appWithDirectRoute();
    await post(`${base}/double`, '{"n":2}');
    await post(`${base}/double`, '{"n":3}');
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('http_request_duration_seconds_count{method="POST",route="/double",status_code="200"} 2');
    const completed = lines().filter((l) => l.msg === 'request completed');
    expect(completed).toHaveLength(2 + 1); // and /metrics
    expect(completed[0]).toMatchObject({ level: 20, req: { method: 'POST', url: '/double' }, res: { statusCode: 200 } });
    expect(completed[0].reqId).toBeUndefined();
    expect(completed[1].reqId).toBeDefined();
  });

  it('logs a slow direct answer at warn', async () => {
    const { base, lines } = await appWithDirectRoute({ slowRequestMs: 0 });
    await post(`${base}/double`, '{"n":2}');
    expect(lines().find((l) => l.msg === 'slow request' && l.reqId === undefined)).toMatchObject({ level: 40, req: { url: '/double' } });
  });

  it('says Connection: close on a direct answer while the server drains', async () => {
    const { app, base } = await appWithDirectRoute();
    const agent = new http.Agent({ keepAlive: true });
    const viaAgent = (body: string) =>
      new Promise<{ connection: string | undefined; body: string }>((resolve, reject) => {
        const req = http.request(`${base}/double`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ connection: res.headers.connection, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    expect((await viaAgent('{"n":2}')).connection).toBe('keep-alive');
    const draining = app.drain(2000);
    const during = await viaAgent('{"n":2}');
    expect(during).toEqual({ connection: 'close', body: JSON.stringify({ doubled: 4, by: 'direct' }) });
    await draining;
    agent.destroy();
  });
});
