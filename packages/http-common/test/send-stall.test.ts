import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { createApp, type App } from '../src/index.js';
import { STALL_AT_CLOSE_MS } from '../src/node-server.js';
import { temporaryCertificate } from './support/temporary-certificate.js';

// Clients on real sockets that stop reading a response, read it slowly, or wait between requests.
const STALL_MS = 500;
const SWEEP_MS = STALL_MS / 4; // node-server.ts: a quarter of the limit, at most 1 s
/** Much more than the socket buffers hold for a client that does not read. */
const BIG = Buffer.alloc(32 * 1024 * 1024, 'x');
/** Sent in one write, for a client that reads it in turns. */
const SLOW_BODY = Buffer.alloc(16 * 1024 * 1024, 'y');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const certs = temporaryCertificate('send-stall-');

interface Server {
  app: App;
  port: number;
  /** When the server's side of this client's connection closed (the time in ms), or undefined if it is open after `waitMs`. */
  serverClosed(client: net.Socket, waitMs: number): Promise<number | undefined>;
  /** http_connections_send_stalled_total */
  stalled(): Promise<number>;
}

async function start(opts: { tls?: boolean; stallMs?: number } = {}): Promise<Server> {
  const stallMs = opts.stallMs ?? STALL_MS;
  const app = await createApp({
    metricsPath: '/metrics',
    defaultMetrics: false,
    openapi: { title: 'test', version: '1.0.0' },
    timeouts: { sendStallMs: stallMs, keepAliveMs: 10_000 },
    ...(opts.tls ? { tls: certs() } : {}),
  });
  app.get('/big', (_request, reply) => reply.type('text/plain').send(BIG));
  app.get('/slow-body', (_request, reply) => reply.type('text/plain').send(SLOW_BODY));
  app.get('/small', async () => ({ ok: true }));
  // an answer still being made as it is sent, as a streamed list is: 64 MB in 64 KB chunks
  app.get('/stream', (_request, reply) =>
    reply.type('text/plain').send(
      Readable.from(
        (function* () {
          for (let i = 0; i < 1024; i++) yield BIG.subarray(0, 64 * 1024);
        })(),
      ),
    ),
  );
  app.get('/think', async () => {
    await sleep(stallMs + SWEEP_MS * 2);
    return { thought: true };
  });
  // the raw TCP sockets, by the client's port, as they close
  const closed = new Map<number, Promise<number>>();
  app.server.on('connection', (socket: net.Socket) => {
    closed.set(socket.remotePort!, new Promise((resolve) => socket.once('close', () => resolve(Date.now()))));
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    app,
    port: (app.server.address() as net.AddressInfo).port,
    async serverClosed(client, waitMs) {
      while (!closed.has(client.localPort!)) await sleep(5);
      return Promise.race([closed.get(client.localPort!)!, sleep(waitMs).then(() => undefined)]);
    },
    async stalled() {
      const metrics = (await app.inject('/metrics')).body;
      return Number(/^http_connections_send_stalled_total (\d+)$/m.exec(metrics)?.[1]);
    },
  };
}

/** A connected client, over TLS if the server speaks it. */
async function connect(server: Server): Promise<net.Socket> {
  if (server.app.initialConfig.https) {
    const socket = tls.connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false });
    await once(socket, 'secureConnect');
    return socket;
  }
  const socket = net.connect(server.port, '127.0.0.1');
  await once(socket, 'connect');
  return socket;
}

/**
 * The server's side of a loopback connection as the kernel still holds it, from /proc/net/tcp:
 * each as its state (RFC 793's, as Linux numbers them: 04 is FIN-WAIT-1) and the bytes still
 * queued to send.
 */
async function kernelHolds(serverPort: number, clientPort: number): Promise<{ state: string; queued: number }[]> {
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  const table = await readFile('/proc/net/tcp', 'utf8');
  return table
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter(([, local, remote]) => local?.endsWith(`:${hex(serverPort)}`) && remote?.endsWith(`:${hex(clientPort)}`))
    .map(([, , , state, queues]) => ({ state: state!, queued: parseInt(queues!.split(':')[0]!, 16) }));
}

/** A client that asks for a big response and never reads it. */
async function stalledClient(server: Server): Promise<net.Socket> {
  const client = await connect(server);
  client.on('error', () => {});
  client.pause();
  client.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
  return client;
}

/** Reads one small response off a kept-alive connection: its status line and body. */
function readResponse(client: net.Socket): Promise<{ status: string; body: string }> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (chunk: Buffer) => {
      got += chunk.toString();
      const end = got.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(got)?.[1]);
      if (end < 0 || got.length < end + 4 + length) return;
      client.off('data', onData).off('close', onClose);
      resolve({ status: got.slice(0, got.indexOf('\r\n')), body: got.slice(end + 4) });
    };
    const onClose = () => reject(new Error(`the connection closed after ${JSON.stringify(got)}`));
    client.on('data', onData).once('close', onClose);
  });
}

describe.concurrent('a client that accepts no byte of a response for sendStallMs', () => {
  for (const scheme of ['http', 'https'] as const) {
    it(`is disconnected and counted (${scheme})`, async () => {
      const server = await start({ tls: scheme === 'https' });
      const client = await stalledClient(server);
      const asked = Date.now();
      const closed = await server.serverClosed(client, STALL_MS * 4);
      expect(closed).toBeDefined();
      expect(closed! - asked).toBeGreaterThanOrEqual(STALL_MS);
      expect(closed! - asked).toBeLessThan(STALL_MS + SWEEP_MS + 1000); // slack for a busy machine
      expect(await server.stalled()).toBe(1);
      // Closed with its answer unsent, the connection stayed in the kernel (FIN-WAIT-1) with
      // ~4 MB of the answer for as long as the client kept it: reset, it is gone at once.
      await sleep(100);
      expect(await kernelHolds(server.port, client.localPort!)).toEqual([]);
      // reading now, the client gets what its own kernel still held, then the end: not the whole body
      let received = 0;
      client.on('data', (chunk: Buffer) => (received += chunk.length));
      client.resume();
      await once(client, 'close');
      expect(received).toBeGreaterThan(0);
      expect(received).toBeLessThan(BIG.length);
      await server.app.close();
    });
  }
});

describe('a client that reads nothing of a streamed answer while the server closes', () => {
  for (const scheme of ['http', 'https'] as const) {
    it(`is cut off after STALL_AT_CLOSE_MS, not sendStallMs, and the close ends (${scheme})`, async () => {
      // sendStallMs as deployed: before, such a client held the close (and the process's shutdown,
      // to its 10 s grace and exit 1) for all of it
      const server = await start({ tls: scheme === 'https', stallMs: 30_000 });
      const client = await connect(server);
      client.on('error', () => {});
      client.pause();
      client.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n');
      await sleep(300);
      const began = Date.now();
      await server.app.close();
      expect(Date.now() - began).toBeLessThan(STALL_AT_CLOSE_MS + 1500);
      expect(await server.serverClosed(client, 0)).toBeDefined();
      client.destroy();
    });
  }
});

// Each test below also holds a stalled client on the same server, which must be cut off
// meanwhile: the test shows the sweep was running, and fails without it.
describe.concurrent('not a send stall', () => {
  it('a slow client that keeps reading receives the whole body', async () => {
    // The server sees a client's reads when the kernel takes more of the response, once about a
    // third of its send buffer (up to 4 MB on Linux) has gone: on loopback, where the client's
    // buffer holds MBs too, a turn of 1 MB shows progress every ~200 ms. The limit here is 1 s.
    const stallMs = 1000;
    const server = await start({ stallMs });
    const stalled = await stalledClient(server);
    const client = await connect(server);
    // 1 MB every 100 ms, paused in between
    let received = 0;
    let thisTurn = 0;
    client.on('data', (chunk: Buffer) => {
      received += chunk.length;
      thisTurn += chunk.length;
      if (thisTurn >= 1024 * 1024) client.pause();
    });
    const reader = setInterval(() => {
      thisTurn = 0;
      client.resume();
    }, 100);
    const started = Date.now();
    client.write('GET /slow-body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await once(client, 'end');
    const tookMs = Date.now() - started;
    clearInterval(reader);
    expect(received).toBeGreaterThan(SLOW_BODY.length); // headers and the whole body
    expect(tookMs).toBeGreaterThan(stallMs);
    expect(await server.serverClosed(stalled, STALL_MS * 4)).toBeDefined();
    expect(await server.stalled()).toBe(1);
    stalled.destroy();
    await server.app.close();
  });

  it('an idle kept-alive connection stays open', async () => {
    const server = await start();
    const stalled = await stalledClient(server);
    const client = await connect(server);
    client.write('GET /small HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await readResponse(client)).toEqual({ status: 'HTTP/1.1 200 OK', body: '{"ok":true}' });
    // idle for the limit and two sweeps, well within the keep-alive timeout (10 s here)
    expect(await server.serverClosed(client, STALL_MS + SWEEP_MS * 2)).toBeUndefined();
    client.write('GET /small HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await readResponse(client)).toEqual({ status: 'HTTP/1.1 200 OK', body: '{"ok":true}' });
    expect(await server.serverClosed(stalled, STALL_MS * 4)).toBeDefined();
    expect(await server.stalled()).toBe(1);
    client.destroy();
    stalled.destroy();
    await server.app.close();
  });

  it('a handler slower than the limit is not cut off, on a new or a kept-alive connection', async () => {
    const server = await start();
    const stalled = await stalledClient(server);
    const client = await connect(server);
    // each answers after the limit and two sweeps; the second on a kept-alive connection
    for (let i = 0; i < 2; i++) {
      client.write('GET /think HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(await readResponse(client)).toEqual({ status: 'HTTP/1.1 200 OK', body: '{"thought":true}' });
    }
    expect(await server.serverClosed(stalled, STALL_MS * 4)).toBeDefined();
    expect(await server.stalled()).toBe(1);
    client.destroy();
    stalled.destroy();
    await server.app.close();
  });
});

describe('a TLS handshake never begun', () => {
  // Node's default handshake timeout is 120 s: thousands of such connections held memory that long.
  it('is closed after the headers timeout', async () => {
    const app = await createApp({
      metricsPath: '/metrics',
      defaultMetrics: false,
      openapi: { title: 'test', version: '1.0.0' },
      timeouts: { headersMs: 1000, requestMs: 2000 },
      tls: certs(),
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const socket = net.connect((app.server.address() as net.AddressInfo).port, '127.0.0.1');
    socket.on('error', () => {});
    const opened = Date.now();
    await once(socket, 'close');
    const closedAfter = Date.now() - opened;
    expect(closedAfter).toBeGreaterThanOrEqual(900);
    expect(closedAfter).toBeLessThan(3000);
    await app.close();
  });
});
