import { selfSignedCertificate } from '@platform/test-cert';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_SECRET, EXTERNAL_ID, motoEndpoint, newAccount, SHARED_KEY, TOKEN } from './support/app.js';
import { httpsGet } from './support/https.js';
import { exitCode, listeningPort, runServer } from './support/server-process.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ecr-api-server-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function exitOf(args: string[], env: Record<string, string> = {}) {
  const { child, output } = runServer(args, env);
  const code = await exitCode(child);
  return { code, output: output() };
}

async function until<T>(fn: () => Promise<T>, done: (value: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (done(value) || Date.now() > end) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('server.ts', () => {
  it('--help prints the flags and exits 0', async () => {
    const { code, output } = await exitOf(['--help']);
    expect(code).toBe(0);
    expect(output).toContain('Usage: ecr-api');
    expect(output).toContain('--aws-endpoint');
  });

  it('--version and -h answer and exit 0; an invalid choice names the allowed values', async () => {
    const version = await exitOf(['--version']);
    expect(version.code).toBe(0);
    expect(version.output.trim()).toMatch(/^ecr-api \d+\.\d+\.\d+$/);
    expect((await exitOf(['-h'])).output).toContain('Usage: ecr-api');
    const level = await exitOf(['--log-level', 'loud']);
    expect(level.code).toBe(2);
    expect(level.output).toContain('--log-level / ECR_API_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace (got "loud")');
  });

  it('exits 2 with a clear message when token, org and role are missing', async () => {
    const { code, output } = await exitOf([], { API_CONFIG: JSON.stringify({ account: { region: 'us-east-1' } }) });
    expect(code).toBe(2);
    expect(output).toContain('invalid configuration');
    expect(output).toMatch(/token is required/);
    expect(output).toMatch(/org is required/);
    expect(output).toMatch(/role is required/);
    expect(output).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('serves the API from a config file against moto, logs no secret, and stops on SIGTERM', async () => {
    const config = path.join(dir, 'config.json');
    await writeFile(
      config,
      JSON.stringify({
        listenAddress: '127.0.0.1:0',
        account: { region: 'us-east-1', akid: 'AKIAEXAMPLEBASEKEY01', secret: BASE_SECRET, externalId: EXTERNAL_ID, role: 'SpinupRole' },
        token: SHARED_KEY,
        org: 'spinserver',
        logLevel: 'info',
      }),
    );
    const { child, output } = runServer(['--config', config, '--aws-endpoint', motoEndpoint(), '--list-strategy', 'describe'], {
      APP_VERSION: '1.2.3',
      GIT_COMMIT: 'deadbeef',
      BUILD_TIME: '2026-11-22T10:00:00Z',
    });
    const base = `http://127.0.0.1:${await listeningPort({ child, output })}/v1/ecr`;
    try {
      expect(await (await fetch(`${base}/ping`)).text()).toBe('pong');
      expect(await (await fetch(`${base}/version`)).json()).toEqual({
        version: '1.2.3',
        githash: 'deadbeef',
        buildstamp: '2026-11-22T10:00:00Z',
      });
      expect((await fetch(`${base}/${newAccount()}/repositories`)).status).toBe(403);

      const account = newAccount();
      const created = await fetch(`${base}/${account}/repositories/grp`, {
        method: 'POST',
        headers: { 'x-auth-token': TOKEN, 'content-type': 'application/json' },
        body: JSON.stringify({ RepositoryName: 'app' }),
      });
      expect(created.status).toBe(200);
      const listed = await fetch(`${base}/${account}/repositories`, { headers: { 'x-auth-token': TOKEN } });
      expect(await listed.json()).toEqual(['grp/app']);
      expect(await (await fetch(`${base}/metrics`)).text()).toContain('sts_assume_role_total{outcome="success"} 1');
    } finally {
      child.kill('SIGTERM');
      expect(await exitCode(child)).toBe(0);
    }
    const log = output();
    expect(log).toContain('"msg":"starting ecr-api"');
    expect(log).toContain('"listStrategy":"describe"');
    for (const secret of [BASE_SECRET, SHARED_KEY, EXTERNAL_ID, TOKEN]) expect(log).not.toContain(secret);
  });

  it('--certfile and --keyfile go together', async () => {
    const { code, output } = await exitOf(['--certfile', '/x.crt'], {
      API_CONFIG: JSON.stringify({ token: 't', org: 'o', account: { role: 'R', region: 'us-east-1' } }),
    });
    expect(code).toBe(2);
    expect(output).toContain('--certfile and --keyfile must be given together');
  });

  it('serves HTTPS with --certfile/--keyfile, reloads a rotated certificate, and stops on SIGTERM', async () => {
    const tls = await mkdtemp(path.join(dir, 'tls-'));
    const { certfile, keyfile } = selfSignedCertificate(tls, { name: 'serving', cn: 'first' });
    const { child, output } = runServer(
      [
        '--listen',
        '127.0.0.1:0',
        '--aws-endpoint',
        motoEndpoint(),
        '--list-strategy',
        'describe',
        '--certfile',
        certfile,
        '--keyfile',
        keyfile,
      ],
      {
        API_CONFIG: JSON.stringify({
          account: { region: 'us-east-1', akid: 'AKIAEXAMPLEBASEKEY01', secret: BASE_SECRET, role: 'SpinupRole' },
          token: SHARED_KEY,
          org: 'spintls',
        }),
      },
    );
    try {
      const port = await listeningPort({ child, output }, 'https');
      const ping = await httpsGet(port, '/v1/ecr/ping');
      expect(ping).toMatchObject({ status: 200, body: 'pong', cn: 'first' });
      expect((await httpsGet(port, `/v1/ecr/${newAccount()}/repositories`)).status).toBe(403);
      const listed = await httpsGet(port, `/v1/ecr/${newAccount()}/repositories`, { 'x-auth-token': TOKEN });
      expect(listed).toMatchObject({ status: 200, body: '[]' });

      // cert-manager style rotation: new files renamed into place
      selfSignedCertificate(tls, { name: 'next', cn: 'second' });
      await rename(path.join(tls, 'next.key'), keyfile);
      await rename(path.join(tls, 'next.crt'), certfile);
      const rotated = await until(
        () => httpsGet(port, '/v1/ecr/ping'),
        (r) => r.cn === 'second',
      );
      expect(rotated.cn).toBe('second');

      // a renewal that keeps the key (certbot --reuse-key): the certificate alone, written in place
      const renewed = path.join(tls, 'renewed.crt');
      execFileSync('openssl', ['req', '-x509', '-key', keyfile, '-days', '1', '-subj', '/CN=third', '-out', renewed], { stdio: 'ignore' });
      await writeFile(certfile, await readFile(renewed));
      const third = await until(
        () => httpsGet(port, '/v1/ecr/ping'),
        (r) => r.cn === 'third',
      );
      expect(third.cn).toBe('third');
    } finally {
      child.kill('SIGTERM');
      expect(await exitCode(child)).toBe(0);
    }
    const log = output();
    expect(log).toContain('TLS certificate reloaded');
    expect(log).not.toContain((await readFile(keyfile, 'utf8')).split('\n')[1]);
  });
});
