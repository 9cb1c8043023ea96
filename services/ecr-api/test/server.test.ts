import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_SECRET, EXTERNAL_ID, motoEndpoint, newAccount, SHARED_KEY, TOKEN } from './support/app.js';

/** The built entry point, run as an operator would: config file, environment, signals. */
const SERVER_JS = fileURLToPath(new URL('../dist/server.js', import.meta.url));
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ecr-api-server-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [SERVER_JS, ...args], {
    env: { PATH: process.env.PATH ?? '', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return { child, output: () => out };
}

async function exitOf(args: string[], env: Record<string, string> = {}) {
  const { child, output } = run(args, env);
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output: output() };
}

describe('server.ts', () => {
  it('--help prints the flags and exits 0', async () => {
    const { code, output } = await exitOf(['--help']);
    expect(code).toBe(0);
    expect(output).toContain('Usage: ecr-api');
    expect(output).toContain('--aws-endpoint');
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
    const { child, output } = run(['--config', config, '--aws-endpoint', motoEndpoint(), '--list-strategy', 'describe'], {
      APP_VERSION: '1.2.3',
      GIT_COMMIT: 'deadbeef',
      BUILD_TIME: '2026-11-22T10:00:00Z',
    });
    const deadline = Date.now() + 20_000;
    let match: RegExpMatchArray | null = null;
    while (!(match = output().match(/Server listening at http:\/\/127\.0\.0\.1:(\d+)/))) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start:\n${output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const base = `http://127.0.0.1:${match[1]}/v1/ecr`;
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
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
    }
    const log = output();
    expect(log).toContain('"msg":"starting ecr-api"');
    expect(log).toContain('"listStrategy":"describe"');
    for (const secret of [BASE_SECRET, SHARED_KEY, EXTERNAL_ID, TOKEN]) expect(log).not.toContain(secret);
  });
});
