import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, start, stop } from './procs.js';

const root = new URL('../../', import.meta.url);
const bcrypt = createRequire(new URL('packages/auth/package.json', root))('bcryptjs');

const ACCOUNTS = ['111111111111', '222222222222'];

/** Sums the AWS-call counters of ecr-api's /metrics by operation. */
async function awsCalls(base) {
  const text = await fetch(`${base}/v1/ecr/metrics`).then((r) => r.text());
  const calls = {};
  for (const m of text.matchAll(/^aws_api_calls_total\{([^}]*)\} (\d+)/gm)) {
    const op = /operation="([^"]+)"/.exec(m[1])?.[1] ?? '?';
    calls[op] = (calls[op] ?? 0) + Number(m[2]);
  }
  return calls;
}

const diff = (after, before) =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => v > 0));

/**
 * AWS calls per request against moto: AssumeRole once per account per credential lifetime,
 * and what listing N repositories costs.
 */
export async function benchEcrApi({ repos }) {
  const server = new URL('services/ecr-api/dist/server.js', root).pathname;
  if (!existsSync(server)) return { available: false, reason: 'services/ecr-api/dist/server.js not built' };
  const motoPort = await freePort();
  const moto = await start(process.env.MOTO_SERVER ?? 'moto_server', ['-H', '127.0.0.1', '-p', String(motoPort)], { ready: /Running on|Serving|127\.0\.0\.1/ }).catch(
    (err) => ({ error: err }),
  );
  if (moto.error) return { available: false, reason: `moto_server: ${moto.error.message.split('\n')[0]}` };

  const out = { available: true, repositories: repos, strategies: {} };
  const dir = mkdtempSync(path.join(tmpdir(), 'ecr-bench-'));
  const key = 'bench-shared-key';
  const headers = { 'x-auth-token': bcrypt.hashSync(key, 4), 'content-type': 'application/json' };
  try {
    for (const strategy of ['describe', 'tagging']) {
      const port = await freePort();
      const config = path.join(dir, `${strategy}.json`);
      writeFileSync(config, JSON.stringify({
        listenAddress: `127.0.0.1:${port}`,
        account: { region: 'us-east-1', akid: 'testing', secret: 'testing', role: 'SpinupRole', externalId: 'bench' },
        token: key,
        org: `bench${strategy}`,
      }));
      const api = await start(process.execPath, [server, '--config', config, '--aws-endpoint', `http://127.0.0.1:${motoPort}`, '--list-strategy', strategy, '--log-level', 'warn'], {
        ready: null,
      });
      const base = `http://127.0.0.1:${port}`;
      for (let t = 0; !(await fetch(`${base}/v1/ecr/ping`).then((r) => r.ok).catch(() => false)); t++) {
        if (t > 300 || api.exitCode !== null) throw new Error('ecr-api did not start');
        await new Promise((r) => setTimeout(r, 100));
      }

      const before = await awsCalls(base);
      for (let i = 0; i < repos; i++) {
        const res = await fetch(`${base}/v1/ecr/${ACCOUNTS[0]}/repositories/${strategy}-${i % 5}`, { method: 'POST', headers, body: JSON.stringify({ RepositoryName: `repo-${i}` }) });
        if (!res.ok) throw new Error(`create repo-${i}: ${res.status} ${await res.text()}`);
      }
      const afterCreate = await awsCalls(base);
      const list = await fetch(`${base}/v1/ecr/${ACCOUNTS[0]}/repositories`, { headers }).then((r) => r.json());
      const afterList = await awsCalls(base);
      const show = await fetch(`${base}/v1/ecr/${ACCOUNTS[0]}/repositories/${strategy}-0/repo-0`, { headers });
      const afterShow = await awsCalls(base);
      for (let i = 0; i < 20; i++) await fetch(`${base}/v1/ecr/${ACCOUNTS[i % 2]}/repositories/${strategy}-0`, { headers });
      const afterRepeat = await awsCalls(base);
      out.strategies[strategy] = {
        create: { requests: repos, calls: diff(afterCreate, before) },
        listAll: { listed: Array.isArray(list) ? list.length : list, calls: diff(afterList, afterCreate) },
        showOne: { status: show.status, calls: diff(afterShow, afterList) },
        twentyListsOverTwoAccounts: { calls: diff(afterRepeat, afterShow) },
        assumeRoleTotal: afterRepeat.AssumeRole ?? 0,
      };
      await stop(api);
    }
  } finally {
    await stop(moto);
  }
  return out;
}
