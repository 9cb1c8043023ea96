import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createApp, type App } from '../src/index.js';
import { ARRIVING_AT_CLOSE_MS } from '../src/node-server.js';
import { temporaryCertificate } from './support/temporary-certificate.js';

const newApp = () => createApp({ metricsPath: '/metrics', defaultMetrics: false, openapi: { title: 'test', version: '1.0.0' } });

/** GET on a kept-alive connection of `agent`; what came back, once the body has ended. */
async function keptAliveGet(app: App, path: string, agent: http.Agent) {
  return getOn((app.server.address() as AddressInfo).port, path, agent);
}

function getOn(port: number, path: string, agent: http.Agent) {
  return new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body, connection: res.headers.connection }));
      })
      .on('error', reject);
  });
}

describe('closing with kept-alive clients', () => {
  it('finishes a response that started before the close, then closes its connection instead of waiting for the client', async () => {
    const app = await newApp();
    let started!: () => void;
    const headersSent = new Promise<void>((r) => (started = r));
    app.get('/slow', (_request, reply) => {
      const body = new PassThrough();
      void reply.type('text/plain').send(body);
      body.write('first part, ');
      started();
      setTimeout(() => body.end('last part'), 300);
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const agent = new http.Agent({ keepAlive: true });
    const answer = keptAliveGet(app, '/slow', agent);
    await headersSent;
    await new Promise((r) => setTimeout(r, 50)); // the headers are out, saying keep-alive
    const closing = Date.now();
    await app.close();
    const closedAfter = Date.now() - closing;
    const { body, connection } = await answer;
    agent.destroy();
    expect(connection).toBe('keep-alive');
    expect(body).toBe('first part, last part');
    // the response's own 300 ms, not the client's idle connection (kept up to the 95 s keep-alive)
    expect(closedAfter).toBeLessThan(3000);
  });
});

describe('answering during the close', () => {
  it('says Connection: close on a response to a request that arrived before the close began', async () => {
    const app = await newApp();
    let arrived!: () => void;
    const inHandler = new Promise<void>((r) => (arrived = r));
    app.get('/wait', async () => {
      arrived();
      await new Promise((r) => setTimeout(r, 200));
      return { ok: true };
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const agent = new http.Agent({ keepAlive: true });
    const answer = keptAliveGet(app, '/wait', agent);
    await inHandler;
    const closed = app.close();
    const { status, connection } = await answer;
    await closed;
    agent.destroy();
    expect(status).toBe(200);
    expect(connection).toBe('close');
  });
});

describe('draining before the close', () => {
  it('answers clients that keep sending on kept-alive connections, saying Connection: close, and resets none of them', async () => {
    const app = await newApp();
    app.get('/ping', async () => ({ ok: true }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const outcomes: Record<string, number> = {};
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const outcome = await getOn(port, '/ping', agent).then(
          (r) => `${r.status} ${r.connection}`,
          (err: { code?: string }) => err.code ?? 'error',
        );
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        if (outcome !== '200 keep-alive' && outcome !== '200 close') return; // refused once nothing listens
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    await new Promise((r) => setTimeout(r, 200));
    await app.drain(500);
    await app.close();
    stop = true;
    await Promise.all(workers);
    agent.destroy();
    expect(outcomes['200 close']).toBeGreaterThan(0);
    expect(Object.keys(outcomes).filter((o) => !['200 keep-alive', '200 close', 'ECONNREFUSED'].includes(o))).toEqual([]);
  });
});

describe('exiting with the reader of stdout gone', () => {
  // pino writes what it still holds synchronously at exit, and its sonic-boom retried a broken pipe
  // for ever: SIGTERM left the process waiting for good once `| head` had gone.
  it('exits on SIGTERM within the grace, its last lines lost rather than waited for', async () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const script = `
      const { createApp, createLogger, listenWithGrace } = await import(${JSON.stringify(dist)});
      const app = await createApp({ logger: createLogger('info', { pretty: false }), metricsPath: '/metrics', defaultMetrics: false, openapi: { title: 't', version: '1' } });
      await listenWithGrace(app, { host: '127.0.0.1', port: 0 }, { drainMs: 0 });`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    expect(line.toString()).toMatch(/Server listening/);
    child.stdout.destroy(); // the reader goes away: the child's next write fails with EPIPE
    const signalled = Date.now();
    child.kill('SIGTERM');
    const exited = await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(() => r('still running'), 8000))]);
    if (exited === 'still running') child.kill('SIGKILL');
    expect(exited).toEqual([0, null]);
    expect(Date.now() - signalled).toBeLessThan(5000);
  }, 15_000);
});

describe('errors nobody listened for', () => {
  it('survives those the service calls survivable, and closes gracefully with exit 1 on any other', async () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const script = `
      const { EventEmitter } = await import('node:events');
      const { createApp, createLogger, listenWithGrace } = await import(${JSON.stringify(dist)});
      const app = await createApp({ logger: createLogger('info', { pretty: false }), metricsPath: '/metrics', defaultMetrics: false, openapi: { title: 't', version: '1' } });
      await listenWithGrace(app, { host: '127.0.0.1', port: 0 }, { drainMs: 0, survivable: (e) => e?.code === 'ECANCELED' });
      const failed = (code) => new EventEmitter().emit('error', Object.assign(new Error('write ' + code), { code, syscall: 'write' }));
      setTimeout(() => failed('ECANCELED'), 50);
      setTimeout(() => app.log.info('still serving'), 150);
      setTimeout(() => failed('EWHATEVER'), 250);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    const messages = out
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(messages.slice(1)).toEqual([
      'a connection failed after it was closed; continuing',
      'still serving',
      'closing after a fatal error',
      'shut down',
    ]);
    expect(code).toBe(1);
  }, 15_000);
});

describe('closing with connections whose request has not all arrived', () => {
  const certs = temporaryCertificate('close-unstarted-');

  /** An app over HTTP or HTTPS, listening, and a way to open raw connections to it (each resumed, errors ignored). */
  async function listening(https: boolean, routes: (app: App) => void) {
    const app = await createApp({
      metricsPath: '/metrics',
      defaultMetrics: false,
      openapi: { title: 'test', version: '1.0.0' },
      ...(https ? { tls: certs() } : {}),
    });
    routes(app);
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as AddressInfo).port;
    const open = async () => {
      const socket = https ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : net.connect({ host: '127.0.0.1', port });
      await once(socket, https ? 'secureConnect' : 'connect');
      socket.on('error', () => {});
      socket.resume();
      return socket;
    };
    return { app, open };
  }

  /** What comes back on `socket`, as it arrives. */
  function received(socket: net.Socket): { text: string } {
    const got = { text: '' };
    socket.on('data', (d: Buffer) => (got.text += d.toString()));
    return got;
  }

  const closed = (sockets: net.Socket[]) => Promise.all(sockets.map((s) => (s.closed ? Promise.resolve() : once(s, 'close'))));

  it.each([false, true])(
    'closes at once a silent one and one still sending its headers, and finishes the request in flight (https: %s)',
    async (https) => {
      const { app, open } = await listening(https, (app) =>
        app.get('/slow', async () => {
          await new Promise((r) => setTimeout(r, 300));
          return { done: true };
        }),
      );
      const silent = await open();
      const headers = await open();
      headers.write('GET /slow HTTP/1.1\r\nHost: x\r\n');
      const inFlight = await open();
      const answer = received(inFlight);
      inFlight.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
      await new Promise((r) => setTimeout(r, 100));

      const began = Date.now();
      await app.close();
      // before: the close waited for the silent connection until the process's grace ran out
      expect(Date.now() - began).toBeLessThan(2000);
      expect(silent.destroyed || silent.readableEnded).toBe(true);
      await closed([silent, headers, inFlight]);
      expect(answer.text).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*\{"done":true\}$/);
    },
    10_000,
  );

  it.each([false, true])(
    'cuts one whose body still arrives ARRIVING_AT_CLOSE_MS after the close began, and finishes a slower request whose body is in (https: %s)',
    async (https) => {
      let handled = 0;
      const { app, open } = await listening(https, (app) =>
        app.post('/things', async () => {
          handled++;
          await new Promise((r) => setTimeout(r, ARRIVING_AT_CLOSE_MS + 500));
          return { done: true };
        }),
      );
      const head = 'POST /things HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n';
      const trickling = await open();
      const trickled = received(trickling);
      trickling.write(`${head}{"n":`);
      const trickle = setInterval(() => trickling.writable && trickling.write(' '), 200);
      const whole = await open();
      const answer = received(whole);
      whole.write(`${head}${JSON.stringify({ n: 1 }).padEnd(20)}`);
      await new Promise((r) => setTimeout(r, 100));

      const began = Date.now();
      await app.close();
      clearInterval(trickle);
      // before: the close waited for the trickled body until the process's grace ran out (10 s, exit 1)
      expect(Date.now() - began).toBeLessThan(ARRIVING_AT_CLOSE_MS + 1500);
      await closed([trickling, whole]);
      expect(trickled.text).toBe('');
      expect(answer.text).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*\{"done":true\}$/);
      expect(handled).toBe(1);
    },
    10_000,
  );
});
