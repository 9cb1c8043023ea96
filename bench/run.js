// pnpm bench: load imagelist (and a Fastify hello-world baseline in the same run) from a second
// process on 127.0.0.1, and count ecr-api's AWS calls per request against moto.
// Flags: --duration S (10) --connections N (50) --rows N (100000) --repos N (50) --only a,b
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { benchEcrApi } from './lib/ecr-api.js';
import { benchImagelist } from './lib/imagelist.js';
import { killAll } from './lib/procs.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: process.env.BENCH_DURATION ?? '10' },
    connections: { type: 'string', default: '50' },
    rows: { type: 'string', default: '100000' },
    repos: { type: 'string', default: '50' },
    only: { type: 'string' },
  },
});
const opts = {
  adminUrl: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  duration: Number(values.duration),
  connections: Number(values.connections),
  rows: Number(values.rows),
  only: values.only?.split(','),
};

try {
  process.stderr.write(`imagelist: ${opts.rows} images, ${opts.connections} connections, ${opts.duration} s per scenario\n`);
  const imagelist = !opts.only || opts.only.some((s) => s !== 'ecr-api') ? await benchImagelist(opts) : { results: [], peakRssMb: 0 };
  const ecr = !opts.only || opts.only.includes('ecr-api') ? await benchEcrApi({ repos: Number(values.repos) }) : { available: false, reason: 'not selected' };

  const baseline = imagelist.results.find((r) => r.scenario === 'baseline');
  const rows = imagelist.results.map((r) => ({
    scenario: r.scenario,
    'req/s': Math.round(r.rps),
    'x baseline': baseline ? (r.rps / baseline.rps).toFixed(2) : '-',
    'p50 ms': r.p50,
    'p99 ms': r.p99,
    'non-2xx': r.non2xx + r.errors,
    'peak RSS MB': Math.round(r.peakMb),
  }));
  console.table(rows);

  const targets = [];
  const target = (name, ok, detail) => targets.push({ target: name, result: ok ? 'PASS' : 'FAIL', detail });
  for (const r of imagelist.results.filter((x) => /^get-|^admission-/.test(x.scenario))) {
    if (!baseline) break;
    target(`${r.scenario} >= 60% of baseline`, r.rps >= 0.6 * baseline.rps, `${((100 * r.rps) / baseline.rps).toFixed(0)}%`);
    target(`${r.scenario} p99 < 5 ms`, r.p99 < 5, `${r.p99} ms`);
  }
  const put = imagelist.results.find((r) => r.scenario === 'put');
  if (put) target('put >= 3,000 req/s', put.rps >= 3000, `${Math.round(put.rps)} req/s`);
  if (imagelist.peakRssMb) target('imagelist peak RSS < 200 MB', imagelist.peakRssMb < 200, `${Math.round(imagelist.peakRssMb)} MB`);
  console.table(targets);

  if (ecr.available) {
    console.log(`ecr-api against moto, ${ecr.repositories} repositories (AWS calls by operation):`);
    for (const [strategy, r] of Object.entries(ecr.strategies)) console.log(`  --list-strategy ${strategy}: ${JSON.stringify(r)}`);
  } else {
    console.log(`ecr-api: not available (${ecr.reason})`);
  }

  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const report = {
    at: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, memGb: Math.round(os.totalmem() / 2 ** 30) },
    options: opts,
    imagelist: imagelist.results,
    imagelistPeakRssMb: imagelist.peakRssMb,
    targets,
    ecrApi: ecr,
  };
  writeFileSync(new URL('./results/latest.json', import.meta.url), `${JSON.stringify(report, null, 2)}\n`);
  console.log('written bench/results/latest.json');
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  killAll();
}
