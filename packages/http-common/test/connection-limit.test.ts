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

  it('closes a new connection at once past 1.5 times the limit, while the open ones have sent no request', async () => {
    const app = await limitedApp();
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as net.AddressInfo;
    const open = () => {
      const socket = https ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : net.connect({ host: '127.0.0.1', port });
      socket.on('error', () => {});
      socket.resume();
      return socket;
    };
    const connections = () => new Promise<number>((r, j) => app.server.getConnections((e, c) => (e ? j(e) : r(c))));
    const serverHolds = async (done: (n: number) => boolean) => {
      while (!done(await connections())) await new Promise((r) => setTimeout(r, 10));
    };
    try {
      // silent: not idle to Node, so the limit's close of the idle ones leaves them open
      const silent = [];
      for (let i = 0; i < MAX * 1.5; i++) silent.push(open());
      await serverHolds((n) => n === MAX * 1.5);
      const dropped = open();
      let answered = false;
      dropped.on('data', () => (answered = true));
      // (events.once would reject on the TLS client's error)
      await new Promise((resolve) => dropped.once('close', resolve));
      expect(answered).toBe(false);
      expect(await app.metrics.getSingleMetricAsString('http_connections_dropped_total')).toMatch(/^http_connections_dropped_total 1$/m);
      for (const socket of silent) socket.destroy();
    } finally {
      await app.close();
    }
  });

  it('moves the limit and the cap while it runs (limitConnections): lowered, a new connection past the new cap is closed; raised, one is taken', async () => {
    const app = await limitedApp();
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as net.AddressInfo;
    const open = () => {
      const socket = https ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : net.connect({ host: '127.0.0.1', port });
      socket.on('error', () => {});
      socket.resume();
      return socket;
    };
    const connections = () => new Promise<number>((r, j) => app.server.getConnections((e, c) => (e ? j(e) : r(c))));
    const serverHolds = async (n: number) => {
      while ((await connections()) !== n) await new Promise((r) => setTimeout(r, 10));
    };
    const closedUnanswered = (socket: net.Socket) =>
      new Promise<boolean>((resolve) => {
        let answered = false;
        socket.on('data', () => (answered = true));
        socket.once('close', () => resolve(!answered));
      });
    const gauge = async () =>
      /^http_connection_limit (\d+)$/m.exec(await app.metrics.getSingleMetricAsString('http_connection_limit'))?.[1];
    try {
      expect(await gauge()).toBe(String(MAX));
      const silent = [];
      for (let i = 0; i < 15; i++) silent.push(open());
      await serverHolds(15);
      app.limitConnections(10); // cap 15: the server is at it
      expect(await gauge()).toBe('10');
      expect(await closedUnanswered(open())).toBe(true);
      expect(await app.metrics.getSingleMetricAsString('http_connections_dropped_total')).toMatch(/^http_connections_dropped_total 1$/m);

      app.limitConnections(MAX); // cap 30
      const taken = open();
      await serverHolds(16);
      expect(taken.destroyed).toBe(false);
      expect(() => app.limitConnections(0)).toThrow(RangeError);
      for (const socket of [...silent, taken]) socket.destroy();
    } finally {
      await app.close();
    }
  });
});
