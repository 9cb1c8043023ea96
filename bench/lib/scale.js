// The scale section: imagelist at several allowlist sizes, run as the Deployment runs it. For each
// size: seed the table in SQL (triggers off, so the service is not replaying a million
// notifications), start the service, time its index load, and measure lookups by id and
// admission under load, with the peak RSS of the process.
import { createRequire } from 'node:module';
import { SEED_SQL } from './scenarios.js';
import { prepareDatabase, startImagelist, waitForIndex } from './imagelist.js';
import { load, memory, stop } from './procs.js';

const postgres = createRequire(new URL('../../services/imagelist/package.json', import.meta.url))('postgres');

async function seedQuietly(url, rows) {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await sql`ALTER TABLE images DISABLE TRIGGER USER`;
    for (let from = 0; from < rows; from += 100_000) await sql.unsafe(SEED_SQL, [from, Math.min(rows, from + 100_000), rows]);
    await sql`ALTER TABLE images ENABLE TRIGGER USER`;
    await sql`ANALYZE images`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Returns one row per size: load time, peak RSS, and p50/p99/req/s of two read scenarios. */
export async function benchScale({ adminUrl, sizes, connections, duration, loader, log }) {
  const rows = [];
  for (const size of sizes) {
    const url = await prepareDatabase(adminUrl);
    const first = await startImagelist(url); // creates the schema
    await stop(first.child);
    log(`scale ${size}: seeding`);
    await seedQuietly(url, size);
    const started = Date.now();
    const { child, base } = await startImagelist(url);
    const index = await waitForIndex(base, size, 300_000);
    const loadMs = Date.now() - started;
    const row = { size, indexLoadMs: loadMs, index: index.index, ...(index.note ? { note: index.note } : {}) };
    for (const scenario of ['get-by-id', 'admission-imagereview']) {
      // warm-up, not measured: the first seconds measure V8's JIT, not the index
      await load({ url: base, scenario, rows: size, connections, duration: 2, loader });
      const r = await load({ url: base, scenario, rows: size, connections, duration, loader });
      row[scenario] = { rps: r.rps, p50: r.p50, p99: r.p99, errors: r.errors };
    }
    row.peakRssMb = Math.round(memory(child.pid).peakRssMb);
    await stop(child);
    log(
      `scale ${size}: ${index.index ? `index fresh ${(loadMs / 1000).toFixed(1)} s after start` : `no index (${index.note})`}, peak RSS ${row.peakRssMb} MB, get-by-id p99 ${row['get-by-id'].p99} ms, imagereview p99 ${row['admission-imagereview'].p99} ms`,
    );
    rows.push(row);
  }
  return rows;
}
