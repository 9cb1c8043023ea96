import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../src/index.js';

// Real clients on real sockets against an app whose memory for request bodies is 2 MiB: a route
// that holds each request until the test lets it go shows which bodies are read while others wait.
const MIB = 1024 * 1024;
/** Whole bytes: a Content-Length of 419430.4 is a malformed request. */
const mib = (n: number) => Math.round(n * MIB);
const BUDGET = mib(2);
const WAIT_MS = 400;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Server {
  base: string;
  port: number;
  /** The tags of the requests whose handler ran, in order. */
  started: string[];
  /** Lets the held request with this tag be answered. */
  release(tag: string): void;
  /** The server's side of the connection from this client port. */
  serverSocket(clientPort: number): Socket | undefined;
  refused(): Promise<number>;
  tooSlow(): Promise<number>;
}

const apps: App[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function start(waitMs = WAIT_MS): Promise<Server> {
  const app = await createApp({
    metricsPath: '/metrics',
    defaultMetrics: false,
    openapi: { title: 'test', version: '1.0.0' },
    bodyMemory: BUDGET,
    timeouts: { bodyWaitMs: waitMs },
  });
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  const opened = (tag: string) => new Promise<void>((resolve) => gates.set(tag, resolve));
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: mib(4) }, (_request, body, done) =>
    done(null, body),
  );
  app.post('/hold', { bodyLimit: mib(4) }, async (request) => {
    const tag = String(request.headers['x-tag']);
    started.push(tag);
    if (request.headers['x-hold'] !== undefined) await opened(tag);
    return { tag, bytes: (request.body as Buffer).length };
  });
  // blocks the event loop, as a large body's parse does
  app.get('/block', async () => {
    const until = Date.now() + 1500;
    while (Date.now() < until);
    return {};
  });
  app.answerDirectly('POST', '/direct', (request, _response, exchange) => {
    exchange.readBody((body) => {
      started.push(String(request.headers['x-tag']));
      exchange.sendJson(200, JSON.stringify({ bytes: body.length }));
    });
  });
  app.post('/direct', async () => ({ by: 'route' }));
  const sockets = new Map<number, Socket>();
  app.server.on('connection', (socket: Socket) => sockets.set(socket.remotePort!, socket));
  await app.listen({ host: '127.0.0.1', port: 0 });
  apps.push(app);
  const port = (app.server.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    started,
    release: (tag) => gates.get(tag)?.(),
    serverSocket: (clientPort) => sockets.get(clientPort),
    refused: () => counter(port, 'http_request_bodies_refused_total'),
    tooSlow: () => counter(port, 'http_request_bodies_too_slow_total'),
  };
}

async function counter(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1]);
}

/**
 * A client that declares `bytes` and sends them `chunk` at a time every `everyMs` (`chunk` 0: only
 * the first KiB, then nothing); resolves with the status line, or 'closed' when the server ends it.
 */
function trickle(s: Server, tag: string, bytes: number, chunk: number, everyMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(s.port, '127.0.0.1');
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    let answer = '';
    const next = () => {
      const n = Math.min(chunk, bytes - sent);
      if (n > 0) socket.write(Buffer.alloc(n, 'b'));
      sent += n;
      if (sent < bytes && chunk > 0) timer = setTimeout(next, everyMs);
    };
    socket.on('connect', () => {
      socket.write(
        `POST /hold HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nX-Tag: ${tag}\r\nContent-Length: ${bytes}\r\n\r\n`,
      );
      socket.write(Buffer.alloc(1024, 'b'));
      sent = 1024;
      next();
    });
    socket.on('data', (d) => (answer += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer ? answer.slice(0, answer.indexOf('\r\n')) : 'closed');
    });
    socket.on('data', () => answer.includes('\r\n\r\n') && socket.end());
  });
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** POSTs `bytes` bytes (chunked: without a Content-Length); the answer, or the error's code. */
function send(
  s: Server,
  tag: string,
  bytes: number,
  opts: { hold?: boolean; chunked?: boolean; path?: string; agent?: http.Agent; onSocket?: (req: http.ClientRequest) => void } = {},
): Promise<Answer | string> {
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'x-tag': tag };
    if (opts.hold) headers['x-hold'] = '1';
    headers[opts.chunked ? 'transfer-encoding' : 'content-length'] = opts.chunked ? 'chunked' : bytes;
    const req = http.request(
      { host: '127.0.0.1', port: s.port, path: opts.path ?? '/hold', method: 'POST', headers, agent: opts.agent ?? false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    opts.onSocket?.(req);
    req.end(Buffer.alloc(bytes, 'b'));
  });
}

/** Resolves once the handler of `tag` has run, or fails after `ms`. */
async function startedWithin(s: Server, tag: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!s.started.includes(tag)) {
    if (Date.now() > until) throw new Error(`${tag} did not start within ${ms} ms (started: ${s.started.join(', ')})`);
    await sleep(10);
  }
}

describe('the memory set aside for request bodies', () => {
  it('holds a body that does not fit unread until a body in flight is answered, then reads it', async () => {
    const s = await start();
    const a = send(s, 'a', mib(1.5), { hold: true });
    await startedWithin(s, 'a', 2000);
    const b = send(s, 'b', mib(1));
    await sleep(WAIT_MS / 2);
    expect(s.started).toEqual(['a']);
    s.release('a');
    expect(await a).toMatchObject({ status: 200, body: JSON.stringify({ tag: 'a', bytes: mib(1.5) }) });
    expect(await b).toMatchObject({ status: 200, body: JSON.stringify({ tag: 'b', bytes: mib(1) }) });
    expect(s.started).toEqual(['a', 'b']);
    expect(await s.refused()).toBe(0);
  });

  it('answers a body that found no room within the wait 503 as problem+json with Retry-After, on a connection that stays usable', async () => {
    const s = await start();
    const a = send(s, 'a', mib(1.5), { hold: true });
    await startedWithin(s, 'a', 2000);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const began = Date.now();
      const b = (await send(s, 'b', mib(1), { agent })) as Answer;
      expect(Date.now() - began).toBeGreaterThanOrEqual(WAIT_MS - 50);
      expect(b.status).toBe(503);
      expect(b.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(b.headers['retry-after']).toBe('1');
      expect(b.headers.connection).toBe('keep-alive');
      expect(JSON.parse(b.body)).toMatchObject({ status: 503, detail: expect.stringContaining('memory set aside') });
      // the refused body was read and dropped, so the same connection carries the next request
      const small = (await send(s, 'c', 100, { agent })) as Answer;
      expect(small).toMatchObject({ status: 200, body: JSON.stringify({ tag: 'c', bytes: 100 }) });
    } finally {
      agent.destroy();
    }
    expect(s.started).toEqual(['a', 'c']);
    expect(await s.refused()).toBe(1);
    s.release('a');
    expect(await a).toMatchObject({ status: 200 });
  });

  it('drops a waiting request whose connection closes: it is never read and takes no room', async () => {
    const s = await start();
    const a = send(s, 'a', mib(1.5), { hold: true });
    await startedWithin(s, 'a', 2000);
    let client!: Socket;
    const b = send(s, 'b', mib(1.5), { onSocket: (req) => req.once('socket', (socket) => (client = socket)) });
    await sleep(50);
    // Node does not read a waiting request's socket, so it sees a client leave only once the
    // request is read; the server's side of the connection closing is seen at once.
    const server = s.serverSocket(client.localPort!)!;
    server.destroy();
    await once(server, 'close');
    expect(typeof (await b)).toBe('string');
    s.release('a');
    await a;
    // 1.5 MiB and then 0.4 MiB fit in the 2 MiB together: 'b' holds none of it
    const c = send(s, 'c', mib(1.5), { hold: true });
    await startedWithin(s, 'c', 2000);
    const d = send(s, 'd', mib(0.4), { hold: true });
    await startedWithin(s, 'd', WAIT_MS / 2);
    s.release('c');
    s.release('d');
    expect(await c).toMatchObject({ status: 200 });
    expect(await d).toMatchObject({ status: 200 });
    expect(s.started).toEqual(['a', 'c', 'd']);
    expect(await s.refused()).toBe(0);
  });

  it('never holds a small body (16 KiB at most), however full the room is', async () => {
    const s = await start();
    const a = send(s, 'a', mib(1.9), { hold: true });
    await startedWithin(s, 'a', 2000);
    const b = send(s, 'b', mib(1));
    const small = (await send(s, 'small', 16 * 1024)) as Answer;
    expect(small).toMatchObject({ status: 200, body: JSON.stringify({ tag: 'small', bytes: 16 * 1024 }) });
    expect(s.started).toEqual(['a', 'small']);
    s.release('a');
    expect(await a).toMatchObject({ status: 200 });
    expect(await b).toMatchObject({ status: 200 });
  });

  it('counts a chunked body as the largest body a route reads (4 MiB here), and lets one body larger than the room go alone', async () => {
    const s = await start();
    const a = send(s, 'a', mib(0.5), { hold: true });
    await startedWithin(s, 'a', 2000);
    const chunked = send(s, 'chunked', 20 * 1024, { chunked: true });
    await sleep(WAIT_MS / 2);
    expect(s.started).toEqual(['a']);
    s.release('a');
    await a;
    expect(await chunked).toMatchObject({ status: 200, body: JSON.stringify({ tag: 'chunked', bytes: 20 * 1024 }) });
    // 3 MiB in a room of 2: alone, it goes
    const big = (await send(s, 'big', mib(3))) as Answer;
    expect(big).toMatchObject({ status: 200, body: JSON.stringify({ tag: 'big', bytes: mib(3) }) });
  });

  it('holds the body of a directly answered route as it holds a route’s', async () => {
    const s = await start();
    const a = send(s, 'a', mib(1.5), { hold: true });
    await startedWithin(s, 'a', 2000);
    const direct = send(s, 'direct', mib(1), { path: '/direct' });
    await sleep(WAIT_MS / 2);
    expect(s.started).toEqual(['a']);
    s.release('a');
    await a;
    expect(await direct).toMatchObject({ status: 200, body: JSON.stringify({ bytes: mib(1) }) });
  });

  it('ends a body that stopped arriving while another waits, and gives its room to the one waiting', async () => {
    const s = await start(5000);
    const slow = trickle(s, 'slow', mib(1.5), 0, 0);
    await sleep(100);
    // once 'waiting' waits, the slow body owes 1 MiB/s less the 1 MiB it may be ahead: after ~1 s
    const began = Date.now();
    const waiting = (await send(s, 'waiting', mib(1))) as Answer;
    expect(waiting).toMatchObject({ status: 200, body: JSON.stringify({ tag: 'waiting', bytes: mib(1) }) });
    expect(Date.now() - began).toBeLessThan(3000);
    expect(await slow).toBe('closed');
    expect(s.started).toEqual(['waiting']);
    expect(await s.tooSlow()).toBe(1);
    expect(await s.refused()).toBe(0);
  });

  it('keeps a body that arrives steadily while another waits for its room', async () => {
    const s = await start(5000);
    // 128 KiB every 10 ms: 12.8 MiB/s, well above the minimum
    const steady = trickle(s, 'steady', mib(1.5), 128 * 1024, 10);
    await sleep(30);
    const waiting = (await send(s, 'waiting', mib(1))) as Answer;
    expect(await steady).toBe('HTTP/1.1 200 OK');
    expect(waiting).toMatchObject({ status: 200 });
    expect(s.started).toEqual(['steady', 'waiting']);
    expect(await s.tooSlow()).toBe(0);
  });

  it('does not count against a body arriving steadily the time the server itself was blocked', async () => {
    const s = await start(5000);
    // 64 KiB every 10 ms: ~240 ms for 1.5 MiB, with the server blocked for 1.5 s meanwhile
    const steady = trickle(s, 'steady', mib(1.5), 64 * 1024, 10);
    await sleep(30);
    const waiting = send(s, 'waiting', mib(1));
    await sleep(30);
    expect((await fetch(`${s.base}/block`)).status).toBe(200);
    expect(await steady).toBe('HTTP/1.1 200 OK');
    expect(await waiting).toMatchObject({ status: 200 });
    expect(await s.tooSlow()).toBe(0);
  });

  it('keeps a body that has arrived, however long its route works on it while another waits', async () => {
    const s = await start(1500);
    const a = send(s, 'a', mib(1.5), { hold: true });
    await startedWithin(s, 'a', 2000);
    // waits 1.5 s, long enough for a body still arriving to owe more than the 1 MiB it may be ahead
    expect(await send(s, 'b', mib(1))).toMatchObject({ status: 503 });
    s.release('a');
    expect(await a).toMatchObject({ status: 200 });
    expect(await s.tooSlow()).toBe(0);
  });

  it('lets a slow body finish when no other body waits for its room', async () => {
    const s = await start();
    // 32 KiB every 50 ms: ~0.6 MiB/s, under the minimum, for about 2.4 s
    expect(await trickle(s, 'slow', mib(1.5), 32 * 1024, 50)).toBe('HTTP/1.1 200 OK');
    expect(await s.tooSlow()).toBe(0);
  });
});
