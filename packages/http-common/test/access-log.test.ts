import net, { type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, HttpProblem, loggerOptions, unavailable, type App } from '../src/index.js';

/** pino's isLevelEnabled, which Fastify's logger type does not declare. */
const enabled = (log: unknown, level: string) => (log as Pick<Logger, 'isLevelEnabled'>).isLevelEnabled(level);

/** An app whose log lines land in `lines`, parsed; `children` counts the pino children made of its logger. */
async function appLoggingAt(
  level: string,
  slowRequestMs = 1000,
): Promise<{ app: App; lines: Record<string, unknown>[]; children: () => number }> {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const logger = pino(loggerOptions(level, { pretty: false }), sink);
  let children = 0;
  // pino's children inherit from their parent: counted for any logger of the tree, each on its own
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with each logger's own `this` below
  const child = logger.child;
  logger.child = function (this: typeof logger, ...args: Parameters<typeof child>) {
    children++;
    return child.apply(this, args);
  } as typeof logger.child;
  const app = await createApp({
    logger,
    metricsPath: '/metrics',
    slowRequestMs,
    // as imagelist's: a connection reset is the database's
    classifyError: (err) =>
      ['ECONNREFUSED', 'ECONNRESET'].includes((err as { code?: string }).code ?? '')
        ? new HttpProblem(503, 'The database is unavailable.')
        : undefined,
    defaultMetrics: false,
    openapi: { title: 'test', version: '1.0.0' },
  });
  app.get('/quiet', async () => ({ ok: true }));
  app.get('/says', async (request) => {
    request.log.info({ what: 'info line' }, 'route info');
    request.log.warn({ what: 'warn line', token: 's3cret' }, 'route warn');
    request.log.child({ part: 'inner' }).warn('child warn');
    return { ok: true };
  });
  app.get('/debugging', { logLevel: 'debug' }, async (request) => {
    request.log.debug('route debug');
    return { ok: true };
  });
  app.get('/verbose', async (request) => {
    request.log.level = 'debug';
    request.log.debug('now verbose');
    return { level: request.log.level };
  });
  app.get('/levels', async (request) => ({ debug: enabled(request.log, 'debug'), info: enabled(request.log, 'info') }));
  app.get('/route-debug', { logLevel: 'debug' }, async (request) => ({ debug: enabled(request.log, 'debug') }));
  app.get('/slow', async () => {
    await new Promise((r) => setTimeout(r, 60));
    return { ok: true };
  });
  app.post('/body', async (request) => request.body);
  app.get('/boom', async () => {
    throw new Error('kaput');
  });
  app.get('/busy', async () => {
    throw unavailable('Too many lists at once; retry shortly.');
  });
  app.get('/down', async () => {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  });
  await app.ready();
  return { app, lines, children: () => children };
}

let open: App | undefined;
afterEach(async () => {
  await open?.close();
  open = undefined;
});

describe('per-request logging (access log)', () => {
  it('at info, writes no line for a request that went well, and the route lines, all with the request id', async () => {
    const { app, lines } = await appLoggingAt('info');
    open = app;
    await app.inject('/quiet');
    expect(lines).toEqual([]);
    await app.inject('/says');
    const msgs = lines.map((l) => l.msg);
    expect(msgs).toEqual(['route info', 'route warn', 'child warn']);
    const ids = new Set(lines.map((l) => l.reqId));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^req-/);
    expect(lines.find((l) => l.msg === 'child warn')).toMatchObject({ part: 'inner' });
    // the app logger's redaction still applies to request lines
    expect(lines.find((l) => l.msg === 'route warn')).toMatchObject({ token: '[redacted]' });
  });

  it('makes a request its own logger only when it writes a line (a pino child costs ~3 µs a request)', async () => {
    const { app, lines, children } = await appLoggingAt('info');
    open = app;
    const before = children();
    for (let i = 0; i < 20; i++) expect((await app.inject('/quiet')).statusCode).toBe(200);
    expect(children() - before).toBe(0);
    await app.inject('/says');
    expect(children() - before).toBe(2); // the request's, and the one its route makes of it
    expect(lines.map((l) => l.msg)).toEqual(['route info', 'route warn', 'child warn']);
  });

  it('at warn, writes only warn and above, still with the request id', async () => {
    const { app, lines } = await appLoggingAt('warn');
    open = app;
    await app.inject('/quiet');
    expect(lines).toEqual([]);
    await app.inject('/says');
    expect(lines.map((l) => l.msg)).toEqual(['route warn', 'child warn']);
    expect(lines.every((l) => typeof l.reqId === 'string')).toBe(true);
  });

  it('logs a 500 with its error and request id at any level', async () => {
    const { app, lines } = await appLoggingAt('error');
    open = app;
    expect((await app.inject('/boom')).statusCode).toBe(500);
    const line = lines.find((l) => l.level === 50);
    expect(line).toMatchObject({ reqId: expect.stringMatching(/^req-/), err: { message: 'kaput' } });
  });

  it('logs a 503 at warn, with the code and message of its cause and no stack; a fault of the service at error with its stack', async () => {
    const { app, lines } = await appLoggingAt('info');
    open = app;
    expect((await app.inject('/down')).statusCode).toBe(503);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 40,
        reqId: expect.stringMatching(/^req-/),
        msg: 'The database is unavailable.',
        cause: { type: 'Error', code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:5432' },
      }),
    ]);
    expect(lines[0]).not.toHaveProperty('err');
    expect((await app.inject('/busy')).statusCode).toBe(503); // shed by the service itself: no cause
    expect(lines[1]).toMatchObject({ level: 40, msg: 'Too many lists at once; retry shortly.' });
    expect(Object.keys(lines[1]!)).not.toContain('err');
    expect(Object.keys(lines[1]!)).not.toContain('cause');
    expect((await app.inject('/boom')).statusCode).toBe(500);
    expect(lines[2]).toMatchObject({ level: 50, err: { message: 'kaput', stack: expect.stringContaining('Error: kaput') } });
  });

  // Its body's stream fails with ECONNRESET ('aborted'): imagelist logged a database outage at warn.
  it('logs a client that left before its body arrived at info, as such, not as a dependency that failed', async () => {
    const { app, lines } = await appLoggingAt('info');
    open = app;
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('POST /body HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"half":');
    await new Promise((r) => setTimeout(r, 100));
    socket.destroy();
    const requestLines = () => lines.filter((l) => l.reqId !== undefined);
    await expect.poll(() => requestLines().length).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(requestLines().map((l) => [l.level, l.msg, l.detail])).toEqual([
      [30, 'request rejected', 'The client closed the connection before the request body arrived whole.'],
    ]);
  });

  it('at debug, writes one line per request with its method, URL, status and time', async () => {
    const { app, lines } = await appLoggingAt('debug');
    open = app;
    await app.inject('/quiet?x=1');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: 'request completed', req: { method: 'GET', url: '/quiet?x=1' }, res: { statusCode: 200 } });
    expect(typeof lines[0]!.responseTime).toBe('number');
  });

  it('writes no secret a client put in the query string', async () => {
    const { app, lines } = await appLoggingAt('warn', 50);
    open = app;
    await app.inject('/slow?name=app&access_token=tok-one&X-Amz-Signature=abc&password&sort=id');
    expect(lines).toHaveLength(1);
    expect((lines[0]!.req as { url: string }).url).toBe(
      '/slow?name=app&access_token=[redacted]&X-Amz-Signature=[redacted]&password=[redacted]&sort=id',
    );
    expect(JSON.stringify(lines)).not.toContain('tok-one');
  });

  it('writes a slow request at warn, with its time', async () => {
    const { app, lines } = await appLoggingAt('warn', 50);
    open = app;
    await app.inject('/quiet');
    expect(lines).toEqual([]);
    await app.inject('/slow');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'slow request', req: { url: '/slow' }, res: { statusCode: 200 } });
    expect(lines[0]!.responseTime).toBeGreaterThanOrEqual(50);
  });

  it("honours a route's own log level", async () => {
    const { app, lines } = await appLoggingAt('warn');
    open = app;
    await app.inject('/debugging');
    expect(lines.map((l) => l.msg)).toContain('route debug');
  });
});

describe('a request raising its own log level', () => {
  it('writes what that level allows, for that request only', async () => {
    const { app, lines } = await appLoggingAt('warn');
    open = app;
    expect((await app.inject('/verbose')).json()).toEqual({ level: 'debug' });
    // the access line for that request goes through the same logger
    expect(lines.map((l) => l.msg)).toEqual(['now verbose', 'request completed']);
    await app.inject('/says');
    expect(lines.map((l) => l.msg)).toEqual(['now verbose', 'request completed', 'route warn', 'child warn']);
  });
});

describe('redaction', () => {
  it('blanks secrets at the top level of a line and one level down', async () => {
    const { app, lines } = await appLoggingAt('info');
    open = app;
    app.log.info(
      { token: 't', password: 'p', secret: 's', databaseUrl: 'postgres://u:pw@h/db', config: { token: 't2', dbPassword: 'p2' } },
      'secrets',
    );
    const line = lines.find((l) => l.msg === 'secrets');
    expect(JSON.stringify(line)).not.toMatch(/"t"|"p"|"s"|pw@|"t2"|"p2"/);
    expect(line).toMatchObject({
      token: '[redacted]',
      password: '[redacted]',
      secret: '[redacted]',
      databaseUrl: '[redacted]',
      config: { token: '[redacted]', dbPassword: '[redacted]' },
    });
  });
});

describe("a request's logger", () => {
  it("answers isLevelEnabled by the level that applies to the request, its route's included", async () => {
    const { app } = await appLoggingAt('info');
    open = app;
    expect((await app.inject('/levels')).json()).toEqual({ debug: false, info: true });
    expect((await app.inject('/route-debug')).json()).toEqual({ debug: true });
  });
});
