import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll } from 'vitest';
import { createApp, type App, type CreateAppOptions } from '../../src/index.js';
import { temporaryCertificate } from './temporary-certificate.js';

export type Scheme = 'http' | 'https';

/**
 * An app over HTTP and one over HTTPS (a temporary certificate), each with `routes`, listening on a
 * loopback port from before the calling file's tests until after them; the function returned gives
 * the one of a scheme.
 */
export function appPerScheme(
  prefix: string,
  options: Pick<CreateAppOptions, 'timeouts'>,
  routes: (app: App) => void,
): (scheme: Scheme) => { app: App; port: number } {
  const certs = temporaryCertificate(prefix);
  const servers: Partial<Record<Scheme, { app: App; port: number }>> = {};
  beforeAll(async () => {
    for (const scheme of ['http', 'https'] as const) {
      const app = await createApp({
        metricsPath: '/metrics',
        defaultMetrics: false,
        openapi: { title: 'test', version: '1.0.0' },
        ...options,
        ...(scheme === 'https' ? { tls: certs() } : {}),
      });
      routes(app);
      await app.listen({ host: '127.0.0.1', port: 0 });
      servers[scheme] = { app, port: (app.server.address() as net.AddressInfo).port };
    }
  });
  afterAll(async () => {
    await Promise.all(Object.values(servers).map((s) => s.app.close()));
  });
  return (scheme) => servers[scheme]!;
}

/** Writes `data` in one chunk on a new connection, and returns what came back until the server closed or `waitMs` passed. */
export async function exchange(scheme: Scheme, port: number, data: string, waitMs: number): Promise<string> {
  const socket = scheme === 'https' ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : net.connect(port, '127.0.0.1');
  await once(socket, scheme === 'https' ? 'secureConnect' : 'connect');
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise((r) => socket.on('close', r));
  socket.write(data);
  await Promise.race([closed, new Promise((r) => setTimeout(r, waitMs))]);
  socket.destroy();
  return got;
}
