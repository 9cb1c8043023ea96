import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, startServer } from './support/server-process.js';
import { TcpProxy, viaProxy } from './support/tcp-proxy.js';

let db: TestDatabase;
describe.skipIf(!process.env.DATABASE_URL)('graceful shutdown under load (needs a PostgreSQL server: DATABASE_URL)', () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    await db.sql`INSERT INTO images (id, name, tags) SELECT md5(n::text) || md5((n + 7)::text), 'quay.io/bulk/app', ARRAY['v' || n] FROM generate_series(1, 5000) n`;
  });
  afterAll(() => db?.close());

  it('finishes in-flight lists whole, closes kept-alive connections after their response, and exits 0 within seconds', async () => {
    const port = await freePort();
    const server = await startServer(['--listen', `127.0.0.1:${port}`], { DATABASE_URL: db.url });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const get = (path: string, onHeaders = () => {}) =>
      new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path, agent }, (res) => {
            onHeaders();
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode!, body, connection: res.headers.connection }));
            res.on('error', reject);
          })
          .on('error', reject);
      });
    // warm the kept-alive connections, then SIGTERM while eight full lists (5,000 images each; small enough that a loaded CI machine finishes them well within the 10 s grace) stream
    await Promise.all(Array.from({ length: 8 }, () => get('/health/live')));
    // SIGTERM once the first list has begun to answer: all eight are in flight, and the lists
    // still waiting for their first page (two list queries run at a time) answer after the close
    // began. A fixed wait let a fast machine send every list's headers before the signal.
    let firstAnswering!: () => void;
    const answering = new Promise<void>((r) => (firstAnswering = r));
    const lists = Array.from({ length: 8 }, () => get('/images', firstAnswering));
    await answering;
    const signalled = Date.now();
    const exited = server.stop('SIGTERM');
    const answers = await Promise.all(lists);
    const code = await exited;
    const took = Date.now() - signalled;
    agent.destroy();
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect((JSON.parse(a.body) as unknown[]).length).toBe(5_000);
    }
    expect(answers.some((a) => a.connection === 'close')).toBe(true);
    // exit 0 means the close finished before the 10 s grace (which exits 1); the time is mostly the
    // lists' own, a second or two on a quiet machine, more while other test files load its 2 cores
    expect(code, server.output().slice(-3000)).toBe(0);
    expect(took).toBeLessThan(8000);
  }, 60_000);

  it('answers every PUT waiting on a hung database within --db-timeout, also those queued for a turn, and exits 0 within its grace', async () => {
    // CI fanning out over one image: PUTs of one id never share a statement, and four statements
    // run at once, so the rest wait their turn. A database that stops answering at the moment of
    // SIGTERM (a proxy that stops forwarding) held each turn for a deadline: the last of 40 PUTs
    // waited ten deadlines, the 10 s grace cut the close short (exit 1) and the PUTs still waiting
    // lost their connections unanswered.
    const proxy = await new TcpProxy('127.0.0.1', Number(new URL(db.url).port || 5432)).start();
    const port = await freePort();
    const server = await startServer(['--listen', `127.0.0.1:${port}`, '--db-timeout', '2'], { DATABASE_URL: viaProxy(db.url, proxy) });
    try {
      const put = async () => {
        const started = Date.now();
        try {
          const res = await fetch(`http://127.0.0.1:${port}/images`, {
            method: 'PUT',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ id: 'a'.repeat(64), name: 'quay.io/fan/out', tags: ['v1'] }),
          });
          const text = await res.text();
          const detail = res.status === 503 ? (JSON.parse(text) as { detail: string }).detail : undefined;
          return { status: res.status, retryAfter: res.headers.get('retry-after'), detail, ms: Date.now() - started };
        } catch (err) {
          return { status: 0, retryAfter: null, ms: Date.now() - started, error: String((err as Error).cause ?? err) };
        }
      };
      expect((await put()).status).toBe(200);
      proxy.freeze();
      const puts = Array.from({ length: 40 }, put);
      await new Promise((r) => setTimeout(r, 200));
      const signalled = Date.now();
      const exited = server.stop('SIGTERM');
      const answers = await Promise.all(puts);
      const code = await exited;
      const took = Date.now() - signalled;
      expect(answers.filter((a) => a.status !== 503 || a.retryAfter === null)).toEqual([]);
      // Sent or not, none is known to be undone: the answer says so, and that a retry is safe.
      expect(answers.filter((a) => !/may or may not have been made\. PUT and DELETE are idempotent/.test(a.detail ?? ''))).toEqual([]);
      expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(3000);
      expect(code, server.output().slice(-3000)).toBe(0);
      expect(took).toBeLessThan(8000);
    } finally {
      await server.stop('SIGKILL');
      proxy.thaw();
      await proxy.stop();
    }
  }, 60_000);

  it('cuts requests whose bodies still trickle in, and exits 0 within seconds', async () => {
    // A client that sends its body a byte a second: the request timeout stops with the close, and
    // such a request held the shutdown until the 10 s grace ran out (exit 1).
    const port = await freePort();
    const server = await startServer(['--listen', `127.0.0.1:${port}`], { DATABASE_URL: db.url });
    try {
      const trickle = (path: string) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.on('error', () => {});
        socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{`);
        const timer = setInterval(() => socket.writable && socket.write(' '), 1000);
        socket.on('close', () => clearInterval(timer));
        return socket;
      };
      const sockets = [trickle('/admission/imagereview'), trickle('/admission/validate'), trickle('/images')];
      await new Promise((r) => setTimeout(r, 500));
      const signalled = Date.now();
      const exited = server.stop('SIGTERM');
      const code = await exited;
      const took = Date.now() - signalled;
      sockets.forEach((s) => s.destroy());
      expect(code, server.output().slice(-3000)).toBe(0);
      expect(took).toBeLessThan(6000);
      expect(server.output()).toMatch(/"msg":"shut down"/);
    } finally {
      await server.stop('SIGKILL');
    }
  }, 30_000);
});
