import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type App } from '../src/index.js';
import { temporaryCertificate } from './support/temporary-certificate.js';

// A request pipelined behind one still being answered waits, its body unread, until the answers
// ahead are sent. Node's request timeout counted that wait against it: a body larger than what
// Node buffers (here 512 KB) pipelined behind an answer that took longer than the request timeout
// was cut off, the connection closed after the answer ahead, and the request never answered.
const certs = temporaryCertificate('pipelined-body-turn-');
const REQUEST_MS = 1000;
const servers: Partial<Record<'http' | 'https', { app: App; port: number }>> = {};

beforeAll(async () => {
  for (const scheme of ['http', 'https'] as const) {
    const app = await createApp({
      metricsPath: '/metrics',
      defaultMetrics: false,
      openapi: { title: 'test', version: '1.0.0' },
      timeouts: { requestMs: REQUEST_MS, headersMs: REQUEST_MS },
      ...(scheme === 'https' ? { tls: certs() } : {}),
    });
    app.get('/slow', async () => {
      await new Promise((r) => setTimeout(r, 2 * REQUEST_MS));
      return { slow: true };
    });
    app.post('/echo', async (request) => ({ bytes: JSON.stringify(request.body).length }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    servers[scheme] = { app, port: (app.server.address() as net.AddressInfo).port };
  }
});
afterAll(async () => {
  await Promise.all(Object.values(servers).map((s) => s.app.close()));
});

/** Writes `data`, reads until the server closes or 6 s pass, and returns the statuses. */
async function statuses(scheme: 'http' | 'https', data: string): Promise<number[]> {
  const { port } = servers[scheme]!;
  const socket = scheme === 'https' ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : net.connect(port, '127.0.0.1');
  await once(socket, scheme === 'https' ? 'secureConnect' : 'connect');
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise((r) => socket.on('close', r));
  socket.write(data);
  await Promise.race([closed, new Promise((r) => setTimeout(r, 6000))]);
  socket.destroy();
  return [...got.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
}

const body = JSON.stringify({ pad: 'p'.repeat(512 * 1024) });
const post = (length = body.length) =>
  `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
const slow = 'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n';
const last = 'GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';

describe.each(['http', 'https'] as const)('over %s', (scheme) => {
  it('a body pipelined behind an answer slower than the request timeout is read and answered in its turn', async () => {
    expect(await statuses(scheme, slow + post() + body + last)).toEqual([200, 200, 200]);
  }, 10_000);

  // Its turn come, the request timeout still bounds it, from then on.
  it('a body pipelined behind a slow answer that does not arrive in its turn gets its 408', async () => {
    const started = Date.now();
    expect(await statuses(scheme, slow + post() + body.slice(0, 1000))).toEqual([200, 408]);
    expect(Date.now() - started).toBeLessThan(2 * REQUEST_MS + REQUEST_MS + 1500);
  }, 10_000);
});
