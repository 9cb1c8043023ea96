import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/index.js';
import { temporaryCertificate } from './support/temporary-certificate.js';

// Real connections, over HTTP and HTTPS, to an app that keeps at most 20: past that, a new
// connection closes the idle ones, never one with a request in flight nor the new one.
const MAX = 20;

const certs = temporaryCertificate('connection-limit-');

/** Sends a GET on the connection; resolves with the answer's status line and body. */
function get(socket: net.Socket, path: string): Promise<{ status: string; body: string }> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(got.slice(0, end))?.[1] ?? 0);
      if (got.length < end + 4 + length) return;
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve({ status: got.split('\r\n')[0]!, body: got.slice(end + 4, end + 4 + length) });
    };
    const onClose = () => reject(new Error(`closed before the answer to ${path}`));
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: test\r\n\r\n`);
  });
}

const OK = 'HTTP/1.1 200 OK';

describe.each([{ https: false }, { https: true }])('past the connection limit (https: $https)', ({ https }) => {
  const limitedApp = () =>
    createApp({
      metricsPath: '/metrics',
      defaultMetrics: false,
      openapi: { title: 'test', version: '1.0.0' },
      maxConnections: MAX,
      ...(https ? { tls: certs() } : {}),
    });

  it('closes the idle connections, answers the one in flight and the new one, and counts it', async () => {
    const app = await limitedApp();
    let letGo!: () => void;
    const gate = new Promise<void>((resolve) => (letGo = resolve));
    app.get('/small', async () => ({ ok: true }));
    app.get('/held', async () => {
      await gate;
      return { held: true };
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as net.AddressInfo;
    const connect = async () => {
      const socket = https ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : net.connect({ host: '127.0.0.1', port });
      socket.on('error', () => {});
      await once(socket, https ? 'secureConnect' : 'connect');
      return socket;
    };
    try {
      const idle = [];
      for (let i = 0; i < MAX - 1; i++) {
        const socket = await connect();
        expect((await get(socket, '/small')).status).toBe(OK);
        idle.push(socket);
      }
      const busy = await connect();
      const held = get(busy, '/held');
      await new Promise((r) => setTimeout(r, 100));
      const closes = idle.map((socket) => once(socket, 'close'));

      const fresh = await connect(); // the 21st
      expect((await get(fresh, '/small')).status).toBe(OK);
      await Promise.all(closes);
      letGo();
      expect(await held).toEqual({ status: OK, body: JSON.stringify({ held: true }) });
      expect(busy.destroyed).toBe(false);
      // both kept connections carry the next request; the limit was passed once
      expect((await get(busy, '/small')).status).toBe(OK);
      const metrics = await get(fresh, '/metrics');
      expect(metrics.body).toMatch(/^http_connection_limit_reached_total 1$/m);
      fresh.destroy();
      busy.destroy();
    } finally {
      await app.close();
    }
  });

  /**
   * An app limited to MAX, listening. `open(from)` connects from a loopback address of its own
   * (127.0.0.2, .3: one client each, as the server tells clients apart); `holds(n)` waits until
   * the server holds n connections.
   */
  async function listening(routes: (app: Awaited<ReturnType<typeof limitedApp>>) => void = () => {}) {
    const app = await limitedApp();
    routes(app);
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as net.AddressInfo;
    const open = async (from: string) => {
      const options = { host: '127.0.0.1', port, localAddress: from };
      const socket = https ? tls.connect({ ...options, rejectUnauthorized: false }) : net.connect(options);
      socket.on('error', () => {});
      return socket;
    };
    const connections = () => new Promise<number>((r, j) => app.server.getConnections((e, c) => (e ? j(e) : r(c))));
    const holds = async (n: number) => {
      while ((await connections()) !== n) await new Promise((r) => setTimeout(r, 10));
    };
    const dropped = async () =>
      Number(
        /^http_connections_dropped_total (\d+)$/m.exec(await app.metrics.getSingleMetricAsString('http_connections_dropped_total'))?.[1],
      );
    return { app, open, holds, dropped };
  }
  /** Resolves true when the socket closes without having received a byte. */
  const closedUnanswered = (socket: net.Socket) =>
    new Promise<boolean>((resolve) => {
      let answered = false;
      socket.on('data', () => (answered = true));
      socket.once('close', () => resolve(!answered));
    });
  const connected = async (socket: Promise<net.Socket>) => {
    const s = await socket;
    await once(s, https ? 'secureConnect' : 'connect');
    return s;
  };
  const ATTACKER = '127.0.0.2';
  const CLIENT = '127.0.0.3';
  /** `n` connections from `from` that send nothing. */
  const silentFrom = async (open: (from: string) => Promise<net.Socket>, from: string, n: number) => {
    const sockets = [];
    for (let i = 0; i < n; i++) sockets.push(await connected(open(from)));
    return sockets;
  };

  it('past 1.5 times the limit, a new client closes the oldest silent connection of the client holding the most', async () => {
    const { app, open, holds, dropped } = await listening((a) => a.get('/small', async () => ({ ok: true })));
    try {
      // silent: not idle to Node, so the limit's close of the idle ones leaves them open
      const silent = await silentFrom(open, ATTACKER, MAX * 1.5);
      await holds(MAX * 1.5);
      const oldestClosed = closedUnanswered(silent[0]!);
      const fresh = await connected(open(CLIENT));
      expect((await get(fresh, '/small')).status).toBe(OK);
      expect(await oldestClosed).toBe(true);
      expect(silent.slice(1).every((socket) => !socket.destroyed)).toBe(true);
      expect(await dropped()).toBe(1);
      for (const socket of [...silent, fresh]) socket.destroy();
    } finally {
      await app.close();
    }
  });

  it('past 1.5 times the limit, closes a new connection at once from the client holding the most', async () => {
    const { app, open, holds, dropped } = await listening();
    try {
      const silent = await silentFrom(open, ATTACKER, MAX * 1.5);
      await holds(MAX * 1.5);
      const refused = await open(ATTACKER);
      expect(await closedUnanswered(refused)).toBe(true);
      expect(silent.every((socket) => !socket.destroyed)).toBe(true);
      expect(await dropped()).toBe(1);
      for (const socket of silent) socket.destroy();
    } finally {
      await app.close();
    }
  });

  it('closes a new connection at once when every connection of the client holding the most has a request in flight', async () => {
    let letGo!: () => void;
    const gate = new Promise<void>((resolve) => (letGo = resolve));
    const { app, open, holds, dropped } = await listening((a) =>
      a.get('/held', async () => {
        await gate;
        return { held: true };
      }),
    );
    try {
      const busy = [];
      for (let i = 0; i < MAX * 1.5; i++) busy.push(get(await connected(open(ATTACKER)), '/held'));
      await holds(MAX * 1.5);
      await new Promise((r) => setTimeout(r, 100)); // every request read
      expect(await closedUnanswered(await open(CLIENT))).toBe(true);
      expect(await dropped()).toBe(1);
      letGo();
      for (const answer of await Promise.all(busy)) expect(answer.status).toBe(OK);
    } finally {
      await app.close();
    }
  });

  it('moves the limit and the cap while it runs (limitConnections)', async () => {
    const { app, open, holds, dropped } = await listening();
    const gauge = async () =>
      /^http_connection_limit (\d+)$/m.exec(await app.metrics.getSingleMetricAsString('http_connection_limit'))?.[1];
    try {
      expect(await gauge()).toBe(String(MAX));
      const silent = await silentFrom(open, ATTACKER, 15);
      await holds(15);
      app.limitConnections(10); // cap 15: the server is at it
      expect(await gauge()).toBe('10');
      expect(await closedUnanswered(await open(ATTACKER))).toBe(true);
      expect(await dropped()).toBe(1);

      app.limitConnections(MAX); // cap 30: room again
      const taken = await connected(open(ATTACKER));
      await holds(16);
      expect(await dropped()).toBe(1);
      expect(() => app.limitConnections(0)).toThrow(RangeError);
      for (const socket of [...silent, taken]) socket.destroy();
    } finally {
      await app.close();
    }
  });
});
