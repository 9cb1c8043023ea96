// The attack section: imagelist with a large allowlist, as the Deployment runs it (its NODE_OPTIONS,
// HTTPS and its 384 MiB memory limit, given as IMAGELIST_MEMORY_LIMIT since this machine has no
// container limit), while one client floods it with connections and another sends the largest
// admission reviews and an ImageReview every 100 ms (lib/attack-load.js). Reports the peak
// resident memory against the limit, and what the other client got.
import { spawn } from 'node:child_process';
import { dropDatabase, prepareDatabase, scrape, startImagelist, waitForIndex } from './imagelist.js';
import { fetchT, memory, sleep, stop } from './procs.js';
import { seedQuietly } from './scale.js';

const DB = 'imagelist_bench_attack';
/** The Deployment's memory limit (deploy/imagelist/base/deployment.yaml). */
const MEMORY_LIMIT_MIB = 384;
const LIMIT_MS = 300_000;

/** Runs lib/attack-load.js against `base`; its counts. */
function attack(base) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [new URL('./attack-load.js', import.meta.url).pathname], { stdio: ['pipe', 'pipe', 'pipe'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), LIMIT_MS);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
    child.stdin.end(JSON.stringify({ url: base }));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out));
      else reject(new Error(`attack client exited (${signal ?? code}):\n${err}`));
    });
  });
}

export async function benchAttack({ adminUrl, size, log }) {
  const url = await prepareDatabase(adminUrl, DB);
  try {
    const first = await startImagelist(url); // creates the schema
    await stop(first.child);
    log(`attack: seeding ${size} images`);
    await seedQuietly(url, size);
    const { child, base } = await startImagelist(url, { env: { IMAGELIST_MEMORY_LIMIT: String(MEMORY_LIMIT_MIB) } });
    try {
      await waitForIndex(base, size, LIMIT_MS);
      await sleep(1500); // the connection limit follows the index each second
      const metrics = scrape(await (await fetchT(`${base}/metrics`)).text(), /^http_connection_limit$/);
      const before = memory(child.pid);
      log(
        `attack: ${size} images loaded, RSS ${Math.round(before.rssMb)} MB, connection limit ${metrics.http_connection_limit}; attacking`,
      );
      const result = await attack(base);
      const after = memory(child.pid);
      return {
        size,
        memoryLimitMib: MEMORY_LIMIT_MIB,
        connectionLimit: metrics.http_connection_limit,
        rssBeforeMb: Math.round(before.rssMb),
        peakRssMb: Math.round(after.peakRssMb),
        rssAfterMb: Math.round(after.rssMb),
        ...result,
      };
    } finally {
      await stop(child);
    }
  } finally {
    await dropDatabase(adminUrl, DB).catch(() => {}); // a million images take ~300 MB of disk
  }
}
