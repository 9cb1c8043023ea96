// ecr-api against moto: how many AWS calls each kind of request costs (from the service's own
// Prometheus counters), and that AssumeRole happens once per account per credential lifetime.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { scrape } from './imagelist.js';
import { fetchT, freePort, start, stop } from './procs.js';

const root = new URL('../../', import.meta.url);
const SERVER = new URL('services/ecr-api/dist/server.js', root).pathname;
const ACCOUNTS = ['111111111111', '222222222222'];
const KEY = 'bench-shared-key';

/** Every AWS-call counter ecr-api exports (aws_*_total, sts_*_total, …), summed per name and operation. */
async function awsCounters(base) {
  const text = await fetchT(`${base}/v1/ecr/metrics`).then((r) => r.text());
  const out = {};
  for (const [series, value] of Object.entries(scrape(text, /^(aws|sts|ecr)_.*_total$|assume/i))) {
    const name = series.replace(/\{.*$/, '');
    const op = /operation="([^"]+)"/.exec(series)?.[1];
    const outcome = /outcome="([^"]+)"/.exec(series)?.[1];
    const key = op ? `${op}${outcome && outcome !== 'success' ? `:${outcome}` : ''}` : `${name}${outcome ? `{${outcome}}` : ''}`;
    out[key] = (out[key] ?? 0) + value;
  }
  return out;
}

const diff = (after, before) =>
  Object.fromEntries(
    Object.entries(after)
      .map(([k, v]) => [k, v - (before[k] ?? 0)])
      .filter(([, v]) => v > 0),
  );
const perRequest = (calls, requests) =>
  Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, Math.round((v / requests) * 100) / 100]));

/** Runs `count` requests, `concurrency` at a time; returns their statuses. */
async function many(count, concurrency, fn) {
  const statuses = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const res = await fn(i);
        await res.arrayBuffer();
        statuses.push(res.status);
      }
    }),
  );
  return statuses;
}

const tally = (statuses) => statuses.reduce((acc, s) => ({ ...acc, [s]: (acc[s] ?? 0) + 1 }), {});

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** A well-formed bcrypt hash of nothing: what a forger sends, at no cost to make. */
function forgedToken(cost) {
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let body = '';
  for (let i = 0; i < 53; i++) body += alphabet[Math.floor(Math.random() * 64)];
  return `$2b$${cost}$${body}`;
}

/**
 * Latency of authenticated requests (a verified, cached token), one at a time for `seconds`, first
 * alone and then while `rate` forged tokens a second arrive (each distinct, at the highest cost the
 * service accepts, so each would need a full bcrypt). Twice: a GET of a repository (two calls to
 * moto, whose own latency dominates) and an authenticated request the service answers 400 itself.
 */
async function forgedTokenLoad({ base, get, path, seconds = 10, rate = 50, cost = 12 }) {
  // Authenticated, then a 400 before any AWS call: the service's own latency, without moto's.
  const serviceOnly = 'not-an-account/repositories';
  const timed = async (where = path) => {
    const ms = [];
    const statuses = [];
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      const t = performance.now();
      const res = await get(where);
      await res.arrayBuffer();
      ms.push(performance.now() - t);
      statuses.push(res.status);
    }
    ms.sort((a, b) => a - b);
    const r = (x) => Math.round(x * 10) / 10;
    return { requests: ms.length, statuses: tally(statuses), p50: r(percentile(ms, 50)), p99: r(percentile(ms, 99)), max: r(ms.at(-1)) };
  };
  const quiet = await timed();
  const quietServiceOnly = await timed(serviceOnly);
  const forged = [];
  const timer = setInterval(() => {
    forged.push(
      fetchT(`${base}/v1/ecr/${path}`, { headers: { 'x-auth-token': forgedToken(cost) } }).then(
        (res) => res.arrayBuffer().then(() => res.status),
        () => 'error',
      ),
    );
  }, 1000 / rate);
  const loaded = await timed();
  const loadedServiceOnly = await timed(serviceOnly);
  clearInterval(timer);
  return {
    rate,
    cost,
    seconds,
    quiet,
    underForgedTokens: loaded,
    serviceOnly: { quiet: quietServiceOnly, underForgedTokens: loadedServiceOnly },
    forged: { sent: forged.length, statuses: tally(await Promise.all(forged)) },
  };
}

async function startMoto() {
  const port = await freePort();
  const child = await start(process.env.MOTO_SERVER ?? 'moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    name: 'moto_server',
    ready: async () => (await fetchT(`http://127.0.0.1:${port}/moto-api/`, {}, 2000)).status < 500,
    timeoutMs: 60_000,
  });
  return { child, endpoint: `http://127.0.0.1:${port}` };
}

/** The flags ecr-api's --help lists (so a renamed flag is reported, not guessed). */
function helpFlags() {
  const help = execFileSync(process.execPath, [SERVER, '--help'], { encoding: 'utf8', timeout: 15_000 });
  return new Set([...help.matchAll(/--([a-z][\w-]*)/g)].map((m) => m[1]));
}

async function measure({ endpoint, strategy, repos, dir, flags }) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const config = path.join(dir, `${strategy}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      listenAddress: `127.0.0.1:${port}`,
      account: { region: 'us-east-1', akid: 'testing', secret: 'testing', role: 'SpinupRole', externalId: 'bench-external-id' },
      token: KEY,
      org: 'bench',
    }),
  );
  const args = [SERVER, '--config', config, '--aws-endpoint', endpoint, '--log-level', 'warn'];
  if (flags.has('list-strategy')) args.push('--list-strategy', strategy);
  const api = await start(process.execPath, args, {
    name: `ecr-api (${strategy})`,
    env: { AWS_EC2_METADATA_DISABLED: 'true' },
    ready: async () => (await fetchT(`${base}/v1/ecr/ping`, {}, 2000)).ok,
    timeoutMs: 30_000,
  });
  try {
    const bcrypt = createRequire(new URL('packages/auth/package.json', root))('bcryptjs');
    const headers = { 'x-auth-token': bcrypt.hashSync(KEY, 4), 'content-type': 'application/json' };
    const get = (p) => fetchT(`${base}/v1/ecr/${p}`, { headers });
    const [acct, acct2] = ACCOUNTS;
    const out = { strategy };
    const step = async (label, requests, fn) => {
      const before = await awsCounters(base);
      const started = performance.now();
      const statuses = await fn();
      const ms = performance.now() - started;
      const calls = diff(await awsCounters(base), before);
      out[label] = { requests, statuses: tally(statuses), ms: Math.round(ms), calls, callsPerRequest: perRequest(calls, requests) };
      return out[label];
    };

    // ~50 repositories in one account, over 5 groups, through the service (each needs one CreateRepository).
    // The first request of the account also pays its AssumeRole.
    await step('create', repos, () =>
      many(repos, 5, (i) =>
        fetchT(`${base}/v1/ecr/${acct}/repositories/${strategy}-g${i % 5}`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ RepositoryName: `repo-${i}` }),
        }),
      ),
    );
    const list = await step('listAll', 1, async () => {
      const res = await get(`${acct}/repositories`);
      const body = await res.json();
      out.listed = Array.isArray(body) ? body.length : body;
      return [res.status];
    });
    if (strategy === 'tagging' && out.listed === 0)
      out.note = "moto's Resource Groups Tagging API returns no ECR resources, so the list is empty here; the call count still holds";
    list.perRepository = Object.fromEntries(
      Object.entries(list.calls).map(([k, v]) => [k, Math.round((v / Math.max(1, repos)) * 100) / 100]),
    );
    await step('listGroup', 1, async () => [(await get(`${acct}/repositories/${strategy}-g0`)).status]);
    await step('showOne', 1, async () => [(await get(`${acct}/repositories/${strategy}-g0/repo-0`)).status]);
    // Repeated requests: the account's session is cached, so no AssumeRole.
    await step('show100', 100, () => many(100, 10, () => get(`${acct}/repositories/${strategy}-g0/repo-0`)));
    // 20 concurrent first requests to an account with no session yet share one AssumeRole.
    await step('burst20NewAccount', 20, () => many(20, 20, () => get(`${acct2}/repositories`)));
    // Both accounts cached now: 40 more requests over the two, no AssumeRole.
    await step('list40TwoAccounts', 40, () => many(40, 10, (i) => get(`${i % 2 ? acct2 : acct}/repositories/${strategy}-g${i % 5}`)));
    if (strategy === 'describe') {
      out.forgedTokens = await forgedTokenLoad({ base, get, path: `${acct}/repositories/${strategy}-g0/repo-0` });
    }
    const assumes = (s) => out[s].calls.AssumeRole ?? 0;
    out.assumeRoles = Object.fromEntries(
      ['create', 'listAll', 'listGroup', 'showOne', 'show100', 'burst20NewAccount', 'list40TwoAccounts'].map((s) => [s, assumes(s)]),
    );
    out.oneAssumeRolePerAccount =
      Object.values(out.assumeRoles).reduce((a, b) => a + b, 0) === 2 &&
      out.assumeRoles.create === 1 &&
      out.assumeRoles.burst20NewAccount === 1;
    return out;
  } finally {
    await stop(api);
  }
}

/** The ecr-api section; never throws for the service being absent or broken, only reports it. */
export async function benchEcrApi({ repos }) {
  if (!existsSync(SERVER)) return { available: false, reason: 'services/ecr-api/dist/server.js does not exist (not built?)' };
  let flags;
  try {
    flags = helpFlags();
  } catch (err) {
    return { available: false, reason: `ecr-api --help failed: ${String(err.stderr || err.message).split('\n')[0]}` };
  }
  for (const f of ['config', 'aws-endpoint']) if (!flags.has(f)) return { available: false, reason: `ecr-api --help lists no --${f}` };

  let moto;
  try {
    moto = await startMoto();
  } catch (err) {
    return { available: false, reason: `moto_server: ${err.message.split('\n')[0]}` };
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'ecr-bench-'));
  const out = { available: true, repositories: repos, strategies: {} };
  try {
    // "describe" lists with DescribeRepositories + tags per repository (works on moto);
    // "tagging" (the default in production) with the Resource Groups Tagging API.
    for (const strategy of flags.has('list-strategy') ? ['describe', 'tagging'] : ['default']) {
      try {
        out.strategies[strategy] = await measure({ endpoint: moto.endpoint, strategy, repos, dir, flags });
      } catch (err) {
        out.strategies[strategy] = { error: err.message.split('\n').slice(0, 6).join('\n') };
      }
    }
    if (Object.values(out.strategies).every((s) => s.error))
      return { available: false, reason: `ecr-api failed: ${Object.values(out.strategies)[0].error}` };
    return out;
  } finally {
    await stop(moto.child);
    rmSync(dir, { recursive: true, force: true });
  }
}
