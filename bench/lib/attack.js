// The attack section: imagelist with a large allowlist, as the Deployment runs it (its NODE_OPTIONS,
// HTTPS and its 384 MiB memory limit, given as IMAGELIST_MEMORY_LIMIT since this machine has no
// container limit), while one client floods it with connections (lib/attack-flood.js) and another
// (lib/attack-client.js, two processes) sends the largest admission reviews and an ImageReview
// every 100 ms. All go on until each has done its part. Reports the peak resident memory against
// the limit, and what the other client got.
import { dropDatabase, prepareDatabase, scrape, startImagelist, waitForIndex } from './imagelist.js';
import { CPUS, fetchT, memory, runScript, sleep, stop } from './procs.js';
import { seedQuietly } from './scale.js';

const DB = 'imagelist_bench_attack';
/** The Deployment's memory limit (deploy/imagelist/base/deployment.yaml). */
const MEMORY_LIMIT_MIB = 384;
const LIMIT_MS = 300_000;

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
      const client = new URL('./attack-client.js', import.meta.url);
      const [flood, large, image] = await allUntilDone([
        [new URL('./attack-flood.js', import.meta.url), { url: base }, 'attacker'],
        [client, { url: base, rows: size, part: 'large' }, 'attack client (large reviews)'],
        [client, { url: base, rows: size, part: 'image' }, 'attack client (ImageReviews)'],
      ]);
      const after = memory(child.pid);
      return {
        size,
        memoryLimitMib: MEMORY_LIMIT_MIB,
        connectionLimit: metrics.http_connection_limit,
        rssBeforeMb: Math.round(before.rssMb),
        peakRssMb: Math.round(after.peakRssMb),
        rssAfterMb: Math.round(after.rssMb),
        ...flood,
        ...large,
        ...image,
      };
    } finally {
      await stop(child);
    }
  } finally {
    await dropDatabase(adminUrl, DB).catch(() => {}); // a million images take ~300 MB of disk
  }
}

/**
 * Runs the scripts at once on the loads' core, as the server's clients are on other machines, each
 * until every one of them has said 'done' (or one failed).
 */
async function allUntilDone(scripts) {
  let allDone;
  const everyOneDone = new Promise((resolve) => (allDone = resolve));
  let done = 0;
  const runs = scripts.map(([url, spec, name]) =>
    runScript(url, spec, {
      name,
      limitMs: LIMIT_MS,
      cpu: CPUS?.load,
      stop: everyOneDone,
      onMessage: () => ++done === scripts.length && allDone(),
    }),
  );
  try {
    return await Promise.all(runs);
  } finally {
    allDone();
  }
}
