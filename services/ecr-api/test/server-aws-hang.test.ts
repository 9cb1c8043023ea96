import { CreateRepositoryCommand, DescribeRepositoriesCommand, PutImageCommand } from '@aws-sdk/client-ecr';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BASE_SECRET, directEcr, manifest, motoEndpoint, newAccount, SHARED_KEY, TOKEN } from './support/app.js';
import { RecordingProxy } from './support/recording-proxy.js';
import { exitCode, listeningPort, runServer, type ServerProcess } from './support/server-process.js';

/**
 * The built server (a real child process, real signals) against moto behind a proxy that never
 * answers chosen AWS operations: the process must outlive its requests' deadlines, and a SIGTERM
 * must answer what is in flight and exit 0 within its grace.
 */
const ORG = 'spinhang';
const headers = { 'x-auth-token': TOKEN, 'content-type': 'application/json' };
let proxy: RecordingProxy;

beforeAll(async () => {
  proxy = await new RecordingProxy(motoEndpoint()).start();
});
afterAll(() => proxy?.stop());

function start(args: string[] = []): ServerProcess {
  return runServer(['--listen', '127.0.0.1:0', '--aws-endpoint', proxy.endpoint, '--list-strategy', 'describe', ...args], {
    API_CONFIG: JSON.stringify({
      account: { region: 'us-east-1', akid: 'AKIAEXAMPLEBASEKEY01', secret: BASE_SECRET, role: 'SpinupRole' },
      token: SHARED_KEY,
      org: ORG,
    }),
  });
}

async function stop(server: ServerProcess): Promise<number | null> {
  if (server.child.exitCode === null) server.child.kill('SIGTERM');
  return exitCode(server.child);
}

async function until(what: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!what() && Date.now() < end) await sleep(20);
}

describe('a request whose deadline passes while AWS hangs', () => {
  let server: ServerProcess | undefined;
  let base: string;
  const DEADLINE_S = 2;

  beforeEach(async () => {
    server = start(['--aws-deadline', String(DEADLINE_S)]);
    base = `http://127.0.0.1:${await listeningPort(server)}/v1/ecr`;
  });
  afterEach(async () => {
    proxy.hang = () => false;
    if (server) expect(await stop(server), server.output()).toBe(0);
    server = undefined;
  });

  /** The process is still there a while after the answer, and still answers. */
  async function survives(account: string): Promise<void> {
    await sleep(500);
    expect(server!.child.exitCode, server!.output()).toBeNull();
    expect(server!.output()).not.toContain('closing after a fatal error');
    expect(await (await fetch(`${base}/ping`)).text()).toBe('pong');
    expect((await fetch(`${base}/${account}/repositories`, { headers })).status).toBe(200);
  }

  it('answers 504 to a create whose policy call hangs, and the process lives on', async () => {
    proxy.hang = (operation) => operation === 'SetRepositoryPolicy';
    const account = newAccount();
    const res = await fetch(`${base}/${account}/repositories/grp`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ RepositoryName: 'crash1' }),
    });
    expect(res.status).toBe(504);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    proxy.hang = () => false;
    await survives(account);
  });

  it('answers a scan of 14 repositories whose DescribeImages hangs with every one under errors, and lives on', async () => {
    const account = newAccount();
    const ecr = await directEcr(account);
    const names = Array.from({ length: 14 }, (_, i) => `grp/r${String(i).padStart(2, '0')}`);
    for (const [i, repositoryName] of names.entries()) {
      await ecr.send(
        new CreateRepositoryCommand({
          repositoryName,
          tags: [
            { Key: 'Name', Value: repositoryName },
            { Key: 'spinup:org', Value: ORG },
            { Key: 'spinup:spaceid', Value: 'grp' },
          ],
        }),
      );
      await ecr.send(new PutImageCommand({ repositoryName, imageManifest: manifest(1000 + i), imageTag: 'v1' }));
    }
    proxy.hang = (operation) => operation === 'DescribeImages';
    const res = await fetch(`${base}/${account}/scanRepositories`, { headers });
    proxy.hang = () => false;
    expect(res.status).toBe(200);
    const body = (await res.json()) as { message: string; repositories: object; errors?: Record<string, string> };
    expect(Object.keys(body.errors ?? {}).sort()).toEqual(names);
    expect(body.errors?.['grp/r13']).toMatch(/AWS did not answer within 2 s/);
    expect(body.repositories).toEqual({});
    // Nothing was scanned, and not because everything had been scanned already.
    expect(body.message).toBe('No scan initiated; 14 repositories failed (see errors)');
    await survives(account);
  });
});

describe('SIGTERM while AWS hangs', () => {
  it('answers the requests in flight 503 problem+json, rolls back their changes, and exits 0 within its grace', async () => {
    // The default deadline (25 s): longer than the 10 s grace, as in production.
    const server = start();
    const base = `http://127.0.0.1:${await listeningPort(server)}/v1/ecr`;
    const account = newAccount();
    proxy.reset();
    proxy.hang = (operation) => operation === 'SetRepositoryPolicy' || operation === 'DescribeRepositories';
    try {
      const answer = async (res: Response) => ({ status: res.status, type: res.headers.get('content-type'), body: await res.text() });
      const create = fetch(`${base}/${account}/repositories/grp`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ RepositoryName: 'inflight' }),
      }).then(answer);
      const show = fetch(`${base}/${account}/repositories/grp/other`, { headers }).then(answer);
      await until(() => proxy.count('SetRepositoryPolicy') > 0 && proxy.count('DescribeRepositories') > 0, 5000);
      expect(proxy.count('SetRepositoryPolicy')).toBe(1);

      const signalled = Date.now();
      server.child.kill('SIGTERM');
      const [created, shown] = await Promise.all([create, show]);
      const code = await exitCode(server.child);
      const took = Date.now() - signalled;

      expect(created.status, server.output()).toBe(503);
      expect(created.type).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(created.body).detail).toMatch(
        /shutting down.*Could not set the repository policy of grp\/inflight; nothing was changed \(rolled back: create the repository grp\/inflight\)/,
      );
      expect(shown.status).toBe(503);
      expect(shown.type).toMatch(/^application\/problem\+json/);
      expect(code, server.output()).toBe(0);
      expect(took).toBeLessThan(10_000);
      proxy.hang = () => false;
      const ecr = await directEcr(account);
      await expect(ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['grp/inflight'] }))).rejects.toThrow(/does not exist/);
    } finally {
      proxy.hang = () => false;
      if (server.child.exitCode === null) server.child.kill('SIGKILL');
    }
  });
});
