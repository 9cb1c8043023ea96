import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { httpsFetch as fetchTls, makeCert } from './support/https.js';
import { runCli, startServer } from './support/server-process.js';

let db: TestDatabase;
let dir: string;

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  db = await createTestDatabase({ migrated: false });
  dir = await mkdtemp(path.join(tmpdir(), 'imagelist-server-'));
});
afterAll(async () => {
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('imagelist CLI', () => {
  it('prints --help with every flag and its env var, and exits 0', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    for (const text of [
      '--listen',
      'IMAGELIST_LISTEN',
      '--tokens-file',
      '--database-url',
      'DATABASE_URL',
      '--certfile',
      '--keyfile',
      '--debug',
    ]) {
      expect(stdout).toContain(text);
    }
  });

  it('rejects bad configuration with a clear message and exit code 2', async () => {
    const flag = await runCli(['--no-such-flag']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/no-such-flag/);
    const port = await runCli([], { IMAGELIST_DB_PORT: 'abc', IMAGELIST_DB_HOST: 'x' });
    expect(port.code).toBe(2);
    expect(port.stderr).toMatch(/--db-port \/ IMAGELIST_DB_PORT/);
    const tls = await runCli(['--certfile', '/x.crt']);
    expect(tls.code).toBe(2);
    expect(tls.stderr).toMatch(/--certfile and --keyfile/);
  });
});

// The process opens connections of its own: embedded PGlite takes one client only.
describe.skipIf(!process.env.DATABASE_URL)('imagelist server (needs a PostgreSQL server: DATABASE_URL)', () => {
  it('serves HTTPS with tokens, reloads the certificate and the tokens, and shuts down gracefully', async () => {
    makeCert(dir, 'serving', 'first');
    const tokensFile = path.join(dir, 'tokens.yaml');
    await writeFile(tokensFile, "tokens:\n  - name: ci\n    token: 'tok-one'\n");
    const port = 20000 + Math.floor(Math.random() * 20000);
    const server = await startServer(
      [
        '--listen',
        `127.0.0.1:${port}`,
        '--tokens-file',
        tokensFile,
        '--certfile',
        path.join(dir, 'serving.crt'),
        '--keyfile',
        path.join(dir, 'serving.key'),
      ],
      { DATABASE_URL: db.url, IMAGELIST_LOG_LEVEL: 'info' },
    );
    try {
      expect((await fetchTls(port, { path: '/health/ping' })).status).toBe(200);
      const body = { id: DIGEST_A, name: 'quay.io/foo/app', tags: ['v1'] };
      expect((await fetchTls(port, { method: 'PUT', path: '/images', body })).status).toBe(401);
      const ok = await fetchTls(port, { method: 'PUT', path: '/images', body, token: 'tok-one' });
      expect(ok.status).toBe(200);
      expect(ok.cn).toBe('first');

      // cert-manager style rotation: new files renamed into place
      makeCert(dir, 'next', 'second');
      await rename(path.join(dir, 'next.key'), path.join(dir, 'serving.key'));
      await rename(path.join(dir, 'next.crt'), path.join(dir, 'serving.crt'));
      const rotated = await until(
        () => fetchTls(port, { path: '/health/live' }),
        (r) => r.cn === 'second',
      );
      expect(rotated.cn).toBe('second');

      // token rotation by atomic replace
      await writeFile(`${tokensFile}.tmp`, "tokens:\n  - name: ci\n    token: 'tok-two'\n");
      await rename(`${tokensFile}.tmp`, tokensFile);
      const put2 = await until(
        () => fetchTls(port, { method: 'PUT', path: '/images', body, token: 'tok-two' }),
        (r) => r.status === 200,
      );
      expect(put2.status).toBe(200);
      expect((await fetchTls(port, { method: 'PUT', path: '/images', body, token: 'tok-one' })).status).toBe(401);
    } finally {
      const code = await server.stop('SIGTERM');
      expect(code).toBe(0);
    }
    const logs = server.output();
    expect(logs).toMatch(/shutting down/);
    expect(logs).toMatch(/TLS certificate reloaded/);
    // secrets never reach the logs
    expect(logs).not.toContain('tok-one');
    expect(logs).not.toContain('tok-two');
    expect(logs).not.toContain(await readFile(path.join(dir, 'serving.key'), 'utf8').then((k) => k.split('\n')[1]));
  });
});
