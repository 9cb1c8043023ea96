import { certificateAuthority, issuedCertificate, type CertificateFiles } from '@platform/test-cert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseUrl, type Config } from '../src/config.js';
import { ChangeFeed } from '../src/store/change-feed.js';
import { databaseTarget, type DatabaseTarget } from '../src/store/database-tls.js';
import { connect } from '../src/store/database.js';
import { CHANNEL, ImageSql } from '../src/store/image-sql.js';
import { migrate, MigrationWatch } from '../src/store/migrate.js';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, runCli, startServer } from './support/server-process.js';
import { TcpProxy } from './support/tcp-proxy.js';

// libpq's sslrootcert, which postgres.js does not support, for a database whose certificate comes
// from a private CA (RDS, Cloud SQL, an in-cluster CA): the test proxy plays a PostgreSQL server
// with ssl on, its certificate signed by a CA of the test's own, in front of the local server.

let db: TestDatabase;
let dir: string;
let ca: CertificateFiles;
let otherCa: CertificateFiles;
/** Proxies whose certificates name only 127.0.0.1 (`ip`) or only localhost (`name`). */
const proxies: Record<'ip' | 'name', TcpProxy> = {} as never;

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'database-tls-'));
  ca = certificateAuthority(dir);
  otherCa = certificateAuthority(dir, { name: 'other-ca', cn: 'Other CA' });
  const target = new URL(db.url);
  for (const [kind, altNames] of [
    ['ip', ['IP:127.0.0.1']],
    ['name', ['DNS:localhost']],
  ] as const) {
    // a CN no host matches: Node's TLS falls back to the CN for a certificate that names no DNS host
    const leaf = issuedCertificate(dir, ca, { name: kind, cn: 'db.example.test', altNames: [...altNames] });
    const tls = { cert: await readFile(leaf.certfile), key: await readFile(leaf.keyfile) };
    proxies[kind] = await new TcpProxy(target.hostname, Number(target.port || 5432), { tls }).start();
  }
});
afterAll(async () => {
  for (const proxy of Object.values(proxies)) await proxy.stop();
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});

/** The test database's URL through a proxy, as `host`, with these query parameters. */
function urlVia(proxy: TcpProxy, host: string, params: Record<string, string>, base = db.url): string {
  const url = new URL(base);
  url.hostname = host;
  url.port = String(proxy.port);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}

type Connection = 'pool' | 'migrations' | 'change feed';
const CONNECTIONS: Connection[] = ['pool', 'migrations', 'change feed'];

/** 'ok' when that connection of imagelist's reaches the database and works, else the error's code. */
async function reach(connection: Connection, target: DatabaseTarget): Promise<string> {
  if (connection !== 'change feed') {
    // both on unanswered-socket.ts's sockets (TLS on a relay); the migrations' with a bound that moves
    const watch = new MigrationWatch();
    const sql = connect({
      ...target,
      max: 1,
      connectTimeout: 2,
      ...(connection === 'migrations' ? { unansweredMs: () => watch.silenceMs } : {}),
    });
    try {
      if (connection === 'migrations') expect(await migrate(sql, undefined, watch)).toEqual({ applied: [], unknown: [] });
      const [row] = await sql`SELECT 1 AS one`;
      expect(row).toEqual({ one: 1 });
      return 'ok';
    } catch (err) {
      return (err as { code?: string }).code ?? String(err);
    } finally {
      await sql.end({ timeout: 0 });
    }
  }
  const heard: string[] = [];
  let failed: string | undefined;
  const feed = new ChangeFeed(
    target,
    new ImageSql(db.sql, 2000),
    { connected: () => {}, changed: (id) => heard.push(id), lost: () => {}, probed: () => {} },
    { retryMs: 50, connectTimeoutS: 2, log: { info: () => {}, warn: (o: { code?: string }) => void (failed ??= o.code ?? 'unknown') } },
  ).start();
  try {
    const id = `notified-${Math.random()}`;
    const deadline = Date.now() + 10_000;
    let notified = false;
    while (Date.now() < deadline) {
      if (failed) return failed;
      if (feed.state === 'listening' && !notified) {
        await db.sql`SELECT pg_notify(${CHANNEL}, ${id})`;
        notified = true;
      }
      if (heard.includes(id)) return 'ok';
      await sleep(20);
    }
    return 'timed out';
  } finally {
    await feed.close();
  }
}

describe.skipIf(!process.env.DATABASE_URL)('sslrootcert: a private CA (needs a PostgreSQL server: DATABASE_URL)', () => {
  it.each(CONNECTIONS)('verify-full with sslrootcert=<the CA>: the %s connects and works', async (connection) => {
    const url = urlVia(proxies.ip, '127.0.0.1', { sslmode: 'verify-full', sslrootcert: ca.certfile });
    expect(await reach(connection, databaseTarget(url))).toBe('ok');
  });

  it.each(CONNECTIONS)('verify-full without sslrootcert (Node CAs only), or with another CA: the %s is refused', async (connection) => {
    const without = databaseTarget(urlVia(proxies.ip, '127.0.0.1', { sslmode: 'verify-full' }));
    expect(without.ssl).toBeUndefined();
    expect(await reach(connection, without)).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    const other = urlVia(proxies.ip, '127.0.0.1', { sslmode: 'verify-full', sslrootcert: otherCa.certfile });
    expect(await reach(connection, databaseTarget(other))).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  // The pool's TLS runs on a relay stream, which Node names "localhost" unless told the host.
  it.each(CONNECTIONS)('verify-full checks the host (an IP address or a name) and verify-ca does not: the %s', async (connection) => {
    const cases = [
      { proxy: proxies.ip, host: '127.0.0.1', matches: true },
      { proxy: proxies.name, host: '127.0.0.1', matches: false },
      { proxy: proxies.name, host: 'localhost', matches: true },
      { proxy: proxies.ip, host: 'localhost', matches: false },
    ];
    for (const { proxy, host, matches } of cases) {
      const full = databaseTarget(urlVia(proxy, host, { sslmode: 'verify-full', sslrootcert: ca.certfile }));
      expect([host, matches, await reach(connection, full)]).toEqual([host, matches, matches ? 'ok' : 'ERR_TLS_CERT_ALTNAME_INVALID']);
      const caOnly = databaseTarget(urlVia(proxy, host, { sslmode: 'verify-ca', sslrootcert: ca.certfile }));
      expect([host, matches, await reach(connection, caOnly)]).toEqual([host, matches, 'ok']);
    }
  });

  it.each(CONNECTIONS)('require checks the CA once sslrootcert is given, as in libpq, and only then: the %s', async (connection) => {
    // a certificate for another name: require never checked names
    const unverified = databaseTarget(urlVia(proxies.name, '127.0.0.1', { sslmode: 'require' }));
    expect(await reach(connection, unverified)).toBe('ok');
    const right = databaseTarget(urlVia(proxies.name, '127.0.0.1', { sslmode: 'require', sslrootcert: ca.certfile }));
    expect(await reach(connection, right)).toBe('ok');
    const wrong = databaseTarget(urlVia(proxies.name, '127.0.0.1', { sslmode: 'require', sslrootcert: otherCa.certfile }));
    expect(await reach(connection, wrong)).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  // The pool's TLS runs on a relay stream (relayed-socket.ts). A relay that closed before
  // postgres.js's queued write left every later connect of that connection silent: after one
  // refused connect, CONNECT_TIMEOUT for good, so a replica never came back from a restart.
  it('the pool connects again once a database that refused it is back', async () => {
    const proxy = await new TcpProxy(new URL(db.url).hostname, Number(new URL(db.url).port || 5432), {
      tls: { cert: await readFile(path.join(dir, 'ip.crt')), key: await readFile(path.join(dir, 'ip.key')) },
    }).start();
    const sql = connect({ ...databaseTarget(urlVia(proxy, '127.0.0.1', { sslmode: 'require' })), max: 1, connectTimeout: 1 });
    try {
      await proxy.stop();
      await expect(sql`SELECT 1`).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      await proxy.restore();
      const codes: string[] = [];
      for (let i = 0; i < 5; i++) {
        try {
          expect(await sql`SELECT 1 AS one`).toEqual([{ one: 1 }]);
          break;
        } catch (err) {
          codes.push((err as { code?: string }).code ?? String(err));
        }
      }
      expect(codes.length, codes.join(', ')).toBeLessThan(5);
    } finally {
      await sql.end({ timeout: 0 });
      await proxy.stop();
    }
  });

  it('the pool keeps its other URL parameters, sent to the server as before', async () => {
    const url = urlVia(proxies.ip, '127.0.0.1', { sslmode: 'verify-full', sslrootcert: ca.certfile, search_path: 'elsewhere,public' });
    const sql = connect({ ...databaseTarget(url), max: 1, connectTimeout: 2 });
    try {
      const [row] = await sql<{ search_path: string }[]>`SELECT current_setting('search_path') AS search_path`;
      expect(row!.search_path).toBe('elsewhere,public');
    } finally {
      await sql.end({ timeout: 0 });
    }
  });
});

describe('databaseTarget: the URL postgres.js gets, and the CA file', () => {
  it('leaves a URL without sslrootcert to postgres.js as it is', () => {
    for (const url of [
      'postgres://u@db:5432/imagelist',
      'postgres://u@db/imagelist?sslmode=verify-full',
      'postgres://u@a:5432,b:5433/imagelist?sslmode=require&target_session_attrs=read-write',
    ]) {
      expect(databaseTarget(url)).toEqual({ url });
    }
  });

  it('takes sslrootcert and sslmode out of the URL (the server refuses sslrootcert as a parameter) and keeps the rest', async () => {
    const target = databaseTarget(
      `postgres://u:p%40ss@a:5432,b:5433/imagelist?application_name=x%20y&sslmode=verify-full&sslrootcert=${encodeURIComponent(ca.certfile)}`,
    );
    expect(target.url).toBe('postgres://u:p%40ss@a:5432,b:5433/imagelist?application_name=x+y');
    expect(target.ssl?.ca).toBe((await readFile(ca.certfile, 'utf8')).trim());
    expect(target.ssl?.rejectUnauthorized).toBe(true);
    expect(target.ssl?.checkServerIdentity).toBeUndefined(); // Node's: the host is checked
    const verifyCa = databaseTarget(`postgres://u@db/imagelist?sslrootcert=${ca.certfile}&sslmode=verify-ca`);
    expect(verifyCa.url).toBe('postgres://u@db/imagelist');
    expect(verifyCa.ssl?.checkServerIdentity?.('db', {} as never)).toBeUndefined();
    // system: Node's CAs and the host, as postgres.js reads it
    expect(databaseTarget('postgres://u@db/imagelist?sslrootcert=system')).toEqual({
      url: 'postgres://u@db/imagelist',
      ssl: { rejectUnauthorized: true },
    });
  });

  it('a CA bundle holds several certificates, all kept', async () => {
    const bundle = path.join(dir, 'bundle.pem');
    await writeFile(bundle, `# RDS-style bundle\n${await readFile(ca.certfile, 'utf8')}\n${await readFile(otherCa.certfile, 'utf8')}`);
    const { ssl } = databaseTarget(`postgres://u@db/imagelist?sslmode=verify-full&sslrootcert=${bundle}`);
    expect((ssl?.ca as string).match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  });

  it('a CA file missing, unreadable or without a certificate, and sslmode=disable, are config errors naming it (exit 2)', async () => {
    const missing = path.join(dir, 'absent', 'ca.pem');
    const notPem = path.join(dir, 'not-a-ca.pem');
    await writeFile(notPem, 'not a certificate');
    const broken = path.join(dir, 'broken.pem');
    await writeFile(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    const cases: [url: string, message: string][] = [
      [`postgres://u@db/x?sslmode=verify-full&sslrootcert=${missing}`, `database sslrootcert ${missing}: cannot be read (ENOENT)`],
      [`postgres://u@db/x?sslmode=verify-full&sslrootcert=${dir}`, `database sslrootcert ${dir}: cannot be read (EISDIR)`],
      [`postgres://u@db/x?sslmode=verify-ca&sslrootcert=${notPem}`, `database sslrootcert ${notPem}: holds no PEM certificate`],
      [`postgres://u@db/x?sslrootcert=${broken}`, `database sslrootcert ${broken}: certificate 1 is not valid`],
      [`postgres://u@db/x?sslrootcert=`, 'database URL: sslrootcert is empty'],
      [`postgres://u@db/x?sslmode=disable&sslrootcert=${ca.certfile}`, 'but sslmode=disable for none'],
      [`postgres://u@db/x?sslmode=verify&sslrootcert=${ca.certfile}`, 'database URL: sslmode "verify" is not one of'],
    ];
    for (const [url, message] of cases) {
      expect(() => databaseTarget(url)).toThrow(
        expect.objectContaining({ name: 'ConfigError', exitCode: 2, message: expect.stringContaining(message) }),
      );
    }
  });

  it('--db-sslrootcert goes into the URL the --db-* flags make', () => {
    const flags = { dbHost: 'db', dbPort: 5432, dbName: 'imagelist', dbUser: 'imagelist', dbSslmode: 'verify-ca' } as Config;
    expect(databaseUrl({ ...flags, dbSslrootcert: '/etc/imagelist/db-ca/ca.pem' })).toBe(
      'postgres://imagelist@db:5432/imagelist?sslmode=verify-ca&sslrootcert=%2Fetc%2Fimagelist%2Fdb-ca%2Fca.pem',
    );
    expect(databaseTarget(databaseUrl({ ...flags, dbSslrootcert: ca.certfile })!).ssl?.ca).toContain('BEGIN CERTIFICATE');
    expect(databaseUrl(flags)).toBe('postgres://imagelist@db:5432/imagelist?sslmode=verify-ca');
  });
});

describe.skipIf(!process.env.DATABASE_URL)('imagelist with sslrootcert (needs a PostgreSQL server: DATABASE_URL)', () => {
  it('a CA file it cannot read stops the start, exit 2, naming it, before anything is migrated', async () => {
    const fresh = await createTestDatabase({ migrated: false });
    try {
      const missing = path.join(dir, 'db-ca', 'absent.pem');
      const viaUrl = await runCli(['--listen', '127.0.0.1:0'], {
        DATABASE_URL: urlVia(proxies.ip, '127.0.0.1', { sslmode: 'verify-full', sslrootcert: missing }, fresh.url),
      });
      expect(viaUrl.code).toBe(2);
      expect(viaUrl.stderr.trim()).toBe(`database sslrootcert ${missing}: cannot be read (ENOENT)`);
      const viaFlags = await runCli(['--listen', '127.0.0.1:0', '--db-sslmode', 'verify-full', '--db-sslrootcert', missing], {
        IMAGELIST_DB_HOST: '127.0.0.1',
        IMAGELIST_DB_PORT: String(proxies.ip.port),
        IMAGELIST_DB_NAME: new URL(fresh.url).pathname.slice(1),
      });
      expect(viaFlags.code).toBe(2);
      expect(viaFlags.stderr).toContain(`database sslrootcert ${missing}: cannot be read (ENOENT)`);
      const [row] = await fresh.sql`SELECT to_regclass('images') IS NOT NULL AS migrated`;
      expect(row!.migrated).toBe(false);
    } finally {
      await fresh.close();
    }
  });

  it('a certificate the CA or the host name refuses stops the start, exit 2, saying what to check', async () => {
    const otherCaUrl = urlVia(proxies.ip, '127.0.0.1', { sslmode: 'verify-ca', sslrootcert: otherCa.certfile });
    const wrongCa = await runCli(['--listen', '127.0.0.1:0'], { DATABASE_URL: otherCaUrl });
    expect(wrongCa.code).toBe(2);
    expect(wrongCa.stderr.trim()).toMatch(
      /^database 127\.0\.0\.1:\d+: its TLS certificate was refused \(UNABLE_TO_VERIFY_LEAF_SIGNATURE: .+\); the certificate must come from a CA in sslrootcert/,
    );
    const otherHost = urlVia(proxies.name, '127.0.0.1', { sslmode: 'verify-full', sslrootcert: ca.certfile });
    const wrongHost = await runCli(['--listen', '127.0.0.1:0'], { DATABASE_URL: otherHost });
    expect(wrongHost.code).toBe(2);
    expect(wrongHost.stderr).toContain('(ERR_TLS_CERT_ALTNAME_INVALID: ');
    expect(wrongHost.stderr).toContain('the host in the URL must be one the certificate names');
  });

  it('verify-full with sslrootcert: migrates, serves, and its change feed hears a change made elsewhere', { timeout: 40_000 }, async () => {
    const fresh = await createTestDatabase({ migrated: false });
    const port = await freePort();
    const server = await startServer(['--listen', `127.0.0.1:${port}`], {
      DATABASE_URL: urlVia(proxies.ip, '127.0.0.1', { sslmode: 'verify-full', sslrootcert: ca.certfile }, fresh.url),
      IMAGELIST_LOG_LEVEL: 'info', // startServer waits for "Server listening at"
    });
    const base = `http://127.0.0.1:${port}`;
    const metric = async (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${base}/metrics`)).text())?.[1]);
    const until = async (name: string, value: number) => {
      const deadline = Date.now() + 10_000;
      while ((await metric(name)) !== value && Date.now() < deadline) await sleep(50);
      return metric(name);
    };
    try {
      const [row] = await fresh.sql`SELECT to_regclass('images') IS NOT NULL AS migrated`;
      expect(row!.migrated).toBe(true);
      // fresh: listening, and its own heartbeats come back on the TLS connection
      expect(await until('imagelist_index_fresh', 1)).toBe(1);
      expect(await metric('imagelist_index_images')).toBe(0);
      // written past the service: only the NOTIFY tells the index
      await new ImageSql(fresh.sql, 2000).upsert([{ digest: DIGEST_A, name: 'quay.io/team/app', tags: ['v1'], by: null }]);
      expect(await until('imagelist_index_images', 1)).toBe(1);
      expect((await fetch(`${base}/health/ping`)).status).toBe(200);
      expect(server.output()).not.toMatch(/unreachable|cannot connect/);
      // A start on a table with rows: the index's COPY comes over the TLS connection too.
      expect(await server.stop()).toBe(0);
      const again = await startServer(['--listen', `127.0.0.1:${port}`], {
        DATABASE_URL: urlVia(proxies.ip, '127.0.0.1', { sslmode: 'verify-full', sslrootcert: ca.certfile }, fresh.url),
        IMAGELIST_LOG_LEVEL: 'info',
      });
      try {
        expect(await until('imagelist_index_fresh', 1)).toBe(1);
        expect(await metric('imagelist_index_images')).toBe(1);
        expect(JSON.parse(await (await fetch(`${base}/images/${DIGEST_A}`)).text())).toMatchObject({ id: DIGEST_A, tags: ['v1'] });
      } finally {
        expect(await again.stop()).toBe(0);
      }
    } finally {
      await server.stop();
      await fresh.close();
    }
  });
});
