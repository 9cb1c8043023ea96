import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';
import { TcpProxy, viaProxy } from './support/tcp-proxy.js';

// The database goes away while the pool sets up new connections. postgres.js then sends a query
// of its own on each (its array types) and leaves that query's failure unhandled: Node's default
// for an unhandled rejection ended the process, which a PostgreSQL restart under load could
// reach, and a replica that restarts needs the database to answer admission again.
let db: TestDatabase;
let proxy: TcpProxy;
let server: RunningServer | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  const target = new URL(db.url);
  proxy = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
});
afterAll(async () => {
  await server?.stop('SIGKILL');
  await proxy?.stop();
  await db?.close();
});

describe('a connection lost while it is set up', () => {
  it('is replaced; the process lives on and writes again once the database is back', async (ctx) => {
    if (db.kind === 'embedded') ctx.skip(); // PGlite takes one connection: nothing to set up anew
    const port = await freePort();
    server = await startServer(['--listen', `127.0.0.1:${port}`, '--log-level', 'info', '--db-timeout', '1'], {
      DATABASE_URL: viaProxy(db.url, proxy),
    });
    const put = (tags: string[]) =>
      fetch(`http://127.0.0.1:${port}/images`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: DIGEST_A, name: 'quay.io/team/app', tags }),
        signal: AbortSignal.timeout(5000),
      }).then((r) => r.status);
    expect(await put(['v1'])).toBe(200);

    // Every connection is reset; each new one is reset again just after the server is ready.
    proxy.resetNewAfterReady(20);
    await proxy.cut();
    await proxy.restore();
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      statuses.push(await put(['v2']).catch(() => 0));
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(server.child.exitCode).toBeNull();
    expect(statuses.every((s) => s === 503)).toBe(true);
    expect(server.output()).toMatch(/a connection failed under a query nobody awaited; continuing/);

    proxy.resetNewAfterReady(undefined);
    const back = Date.now();
    while ((await put(['v3']).catch(() => 0)) !== 200) {
      expect(Date.now() - back).toBeLessThan(5000);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(server.child.exitCode).toBeNull();
  }, 30_000);
});
