// The scale section: imagelist at several allowlist sizes, run as the Deployment runs it. For each
// size: seed its own database in SQL (triggers off, so the service is not replaying a million
// notifications), start the service, time its index load. Then every size's instance, all up at
// once, is loaded in rounds that alternate sizes and scenarios (lookups by id, admission), so a
// size's latency is compared with another's measured side by side, and the peak RSS of each
// process is read at the end.
import { createRequire } from 'node:module';
import { SEED_SQL } from './scenarios.js';
import { dropDatabase, prepareDatabase, startImagelist, waitForIndex } from './imagelist.js';
import { load, median, memory, stop } from './procs.js';

const postgres = createRequire(new URL('../../services/imagelist/package.json', import.meta.url))('postgres');
const SCENARIOS = ['get-by-id', 'admission-imagereview'];

const databaseOf = (size) => `imagelist_bench_${size}`;

/** Seeds `rows` images with the triggers off (no notifications to replay), then vacuums and checkpoints. */
export async function seedQuietly(url, rows) {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await sql`ALTER TABLE images DISABLE TRIGGER USER`;
    for (let from = 0; from < rows; from += 100_000) await sql.unsafe(SEED_SQL, [from, Math.min(rows, from + 100_000), rows]);
    await sql`ALTER TABLE images ENABLE TRIGGER USER`;
    // What autovacuum and the checkpointer would otherwise do to a million fresh rows while the
    // loads run, on the servers' core.
    await sql`VACUUM (FREEZE, ANALYZE) images`;
    await sql`CHECKPOINT`.catch(() => {}); // needs a superuser or pg_checkpoint
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** One size's database, seeded, and its instance started on it; the time until its index was fresh. */
async function startSize(adminUrl, size, log) {
  const url = await prepareDatabase(adminUrl, databaseOf(size));
  const first = await startImagelist(url); // creates the schema
  await stop(first.child);
  log(`scale ${size}: seeding`);
  await seedQuietly(url, size);
  const started = Date.now();
  const { child, base } = await startImagelist(url);
  const index = await waitForIndex(base, size, 300_000);
  const loadMs = Date.now() - started;
  log(`scale ${size}: ${index.index ? `index fresh ${(loadMs / 1000).toFixed(1)} s after start` : `no index (${index.note})`}`);
  return { size, child, base, row: { size, indexLoadMs: loadMs, index: index.index, ...(index.note ? { note: index.note } : {}) } };
}

/**
 * Returns one row per size: index load time, peak RSS, and the medians over the rounds of each
 * scenario's req/s, p50 and p99, with each round's p99 (`p99Rounds`, in the order of the rounds).
 */
export async function benchScale({ adminUrl, sizes, connections, duration, rounds, loader, log }) {
  const up = [];
  try {
    for (const size of sizes) up.push(await startSize(adminUrl, size, log));
    const seconds = Math.max(1, Math.round(duration / rounds));
    // warm-up, not measured: the first seconds measure V8's JIT, not the index
    for (const s of up)
      for (const scenario of SCENARIOS) await load({ url: s.base, scenario, rows: s.size, connections, duration: 2, loader });
    const runs = new Map(up.map((s) => [s, Object.fromEntries(SCENARIOS.map((scenario) => [scenario, []]))]));
    for (let round = 0; round < rounds; round++) {
      for (const scenario of SCENARIOS) {
        for (const s of up)
          runs.get(s)[scenario].push(await load({ url: s.base, scenario, rows: s.size, connections, duration: seconds, loader }));
      }
    }
    return up.map((s) => {
      const row = { ...s.row, peakRssMb: Math.round(memory(s.child.pid).peakRssMb) };
      for (const scenario of SCENARIOS) {
        const r = runs.get(s)[scenario];
        row[scenario] = {
          rps: median(r.map((x) => x.rps)),
          p50: median(r.map((x) => x.p50)),
          p99: median(r.map((x) => x.p99)),
          p99Rounds: r.map((x) => x.p99),
          errors: r.reduce((a, x) => a + x.errors, 0),
        };
      }
      log(
        `scale ${s.size}: peak RSS ${row.peakRssMb} MB; p99 ms by round: get-by-id ${row['get-by-id'].p99Rounds.join(' ')}, imagereview ${row['admission-imagereview'].p99Rounds.join(' ')}`,
      );
      return row;
    });
  } finally {
    for (const s of up) await stop(s.child);
    // a million images take ~300 MB of disk each
    for (const size of sizes) await dropDatabase(adminUrl, databaseOf(size)).catch(() => {});
  }
}

/** Of two rows of benchScale, the median over the rounds of `scenario`'s p99 ratio (a / b), round by round. */
export function p99Ratio(a, b, scenario) {
  const x = a[scenario].p99Rounds;
  const y = b[scenario].p99Rounds;
  return median(x.map((v, i) => v / y[i]));
}
