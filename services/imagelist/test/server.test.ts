import { selfSignedCertificate } from '@platform/test-cert';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { httpsFetch as fetchTls } from './support/https.js';
import { freePort, runCli, startServer } from './support/server-process.js';

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
    // Unset, writes are open; set but empty (a template's missing value) is a mistake, not that.
    const noTokens = await runCli(['--listen', '127.0.0.1:0'], { IMAGELIST_TOKENS_FILE: '', DATABASE_URL: '' });
    expect(noTokens.code).toBe(2);
    expect(noTokens.stderr).toContain('IMAGELIST_TOKENS_FILE: is set but empty');
    expect(noTokens.stderr).toContain('DATABASE_URL: is set but empty');
  });

  it('without a database, and nowhere to keep the embedded one, says so and exits 2', async () => {
    const file = path.join(dir, 'a-file');
    await writeFile(file, '');
    const { code, stderr } = await runCli(['--listen', '127.0.0.1:0', '--data-dir', path.join(file, 'imagelist')]);
    expect(code).toBe(2);
    expect(stderr).toContain(
      `no database: DATABASE_URL (or --db-host) is not set, and the embedded database cannot keep its files in ${file}/imagelist (ENOTDIR)`,
    );
  });

  it('names the allowed values of a choice once, answers --version and -h, and warns of a mistyped variable', async () => {
    const level = await runCli(['--log-level', 'loud']);
    expect(level.code).toBe(2);
    expect(level.stderr).toContain('--log-level / IMAGELIST_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace (got "loud")');
    expect(level.stderr.match(/--log-level/g)).toHaveLength(1);
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^imagelist \d+\.\d+\.\d+$/);
    const help = await runCli(['-h']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--listen');
  });
});

describe.skipIf(!process.env.DATABASE_URL)('imagelist start-up errors (needs a PostgreSQL server: DATABASE_URL)', () => {
  it('a tokens file it cannot read stops the start, exit 2, before anything is migrated', async () => {
    const fresh = await createTestDatabase({ migrated: false });
    try {
      const missing = await runCli(['--listen', '127.0.0.1:0', '--tokens-file', path.join(dir, 'absent.yaml')], {
        DATABASE_URL: fresh.url,
      });
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain('absent.yaml');
      const [row] = await fresh.sql`SELECT to_regclass('images') IS NOT NULL AS migrated`;
      expect(row!.migrated).toBe(false);
    } finally {
      await fresh.close();
    }
  });

  it('a port in use or a bad TLS file is one line naming it, exit 1; a mistyped variable is a warning naming it', async () => {
    const taken = new URL(process.env.DATABASE_URL!).port || '5432';
    const inUse = await runCli(['--listen', `127.0.0.1:${taken}`], { DATABASE_URL: db.url, IMAGELIST_LOGLEVEL: 'debug' });
    expect(inUse.code).toBe(1);
    expect(inUse.stderr.trim()).toBe(`fatal: listen EADDRINUSE: address already in use 127.0.0.1:${taken}`);
    expect(inUse.stdout).toContain(
      'environment variable IMAGELIST_LOGLEVEL is not a setting of this service and is ignored; did you mean IMAGELIST_LOG_LEVEL?',
    );
    const bad = path.join(dir, 'bad.pem');
    await writeFile(bad, 'not a certificate');
    const tls = await runCli(['--listen', '127.0.0.1:0', '--certfile', bad, '--keyfile', bad], { DATABASE_URL: db.url });
    expect(tls.code).toBe(1);
    expect(tls.stderr.trim().split('\n')).toHaveLength(1);
    expect(tls.stderr).toContain(`fatal: TLS certificate ${bad} with key ${bad}:`);
  });
});

// The process opens connections of its own: embedded PGlite takes one client only.
describe.skipIf(!process.env.DATABASE_URL)('imagelist server (needs a PostgreSQL server: DATABASE_URL)', () => {
  it('serves HTTPS with tokens, reloads the certificate and the tokens, and shuts down gracefully', async () => {
    selfSignedCertificate(dir, { name: 'serving', cn: 'first' });
    const tokensFile = path.join(dir, 'tokens.yaml');
    await writeFile(tokensFile, "tokens:\n  - name: ci\n    token: 'tok-one'\n");
    const port = await freePort();
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
      selfSignedCertificate(dir, { name: 'next', cn: 'second' });
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
    expect(logs).toMatch(/"msg":"shut down"/);
    expect(logs).toMatch(/TLS certificate reloaded/);
    // secrets never reach the logs
    expect(logs).not.toContain('tok-one');
    expect(logs).not.toContain('tok-two');
    expect(logs).not.toContain(await readFile(path.join(dir, 'serving.key'), 'utf8').then((k) => k.split('\n')[1]));
  });
});
