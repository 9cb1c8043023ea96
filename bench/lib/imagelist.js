import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { freePort, load, memory, start, stop } from './procs.js';

const root = new URL('../../', import.meta.url);
const require = createRequire(new URL('services/imagelist/package.json', root));
const postgres = require('postgres');

const digest = (n) => createHash('sha256').update(String(n)).digest('hex');
/** 100k images over 25k names (4 digests each), three tags each: a registry a few years in. */
const nameOf = (n) => `registry.example.com/team-${n % 500}/app-${n % 25_000}`;

async function prepareDatabase(adminUrl, rows) {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe('DROP DATABASE IF EXISTS imagelist_bench WITH (FORCE)');
  await admin.unsafe('CREATE DATABASE imagelist_bench');
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = '/imagelist_bench';
  const { migrate } = await import(new URL('services/imagelist/dist/store/migrate.js', root));
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
  await migrate(sql);
  // Seeded before the service starts, so its index loads them in one go.
  await sql`
    INSERT INTO images (id, name, tags)
    SELECT encode(sha256(i::text::bytea), 'hex'),
           'registry.example.com/team-' || (i % 500) || '/app-' || (i % 25000),
           '{v1,v2,latest}'
    FROM generate_series(0, ${rows - 1}) AS i`;
  await sql.end();
  return url.toString();
}

function podReview(i) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `bench-${i}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'default',
      operation: 'CREATE',
      object: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `web-${i}`, namespace: 'default' },
        spec: {
          containers: [
            { name: 'app', image: `${nameOf(i)}:v1` },
            { name: 'sidecar', image: `${nameOf(i + 1)}@sha256:${digest(i + 1)}` },
          ],
        },
      },
    },
  };
}

/** Waits until the service listens and its in-memory index holds every seeded image. */
async function indexReady(base, rows) {
  const end = Date.now() + 120_000;
  while (Date.now() < end) {
    const text = await fetch(`${base}/metrics`).then((r) => r.text()).catch(() => '');
    if (/^imagelist_index_fresh 1$/m.test(text) && new RegExp(`^imagelist_index_images ${rows}$`, 'm').test(text)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('imagelist index did not load');
}

export async function benchImagelist({ adminUrl, rows, duration, connections, only }) {
  const results = [];
  const want = (name) => !only || only.includes(name);
  const run = async (name, url, requests, server) => {
    if (!want(name)) return;
    await load({ url, connections, duration: 1, requests }); // warm-up
    const r = await load({ url, connections, duration, requests });
    results.push({ service: name === 'baseline' ? 'fastify' : 'imagelist', scenario: name, ...r, ...(server ? memory(server.pid) : {}) });
    process.stderr.write(`  ${name}: ${Math.round(r.rps)} req/s\n`);
  };

  const helloPort = await freePort();
  const hello = await start(process.execPath, [new URL('./hello.js', import.meta.url).pathname, String(helloPort)], { ready: /listening/ });
  await run('baseline', `http://127.0.0.1:${helloPort}/`, [{ method: 'GET', path: '/' }], hello);
  await stop(hello);

  process.stderr.write(`  seeding ${rows} images\n`);
  const dbUrl = await prepareDatabase(adminUrl, rows);
  const port = await freePort();
  const server = await start(
    process.execPath,
    // warn: per-request info logs would measure the log pipe
    [new URL('services/imagelist/dist/server.js', root).pathname, '--listen', `127.0.0.1:${port}`, '--database-url', dbUrl, '--log-level', 'warn'],
    { ready: /PUT and DELETE are open/, env: { NODE_ENV: 'production' } },
  );
  const base = `http://127.0.0.1:${port}`;
  await indexReady(base, rows);
  const sample = Array.from({ length: 200 }, (_, k) => Math.floor((k * rows) / 200));
  const json = { 'content-type': 'application/json' };

  await run('get-by-id', base, sample.map((n) => ({ method: 'GET', path: `/images/${digest(n)}` })), server);
  await run('get-by-name', base, sample.map((n) => ({ method: 'GET', path: `/images?name=${encodeURIComponent(nameOf(n))}` })), server);
  await run('put', base, sample.map((n, k) => ({
    method: 'PUT', path: '/images', headers: json,
    body: JSON.stringify({ id: digest(k % 2 ? n : rows + n), name: nameOf(n), tags: ['v1', 'v2', 'latest', `build-${k}`] }),
  })), server);
  await run('admission-imagereview', base, sample.map((n) => ({
    method: 'POST', path: '/admission/imagereview', headers: json,
    body: JSON.stringify({ apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', spec: { containers: [{ image: `${nameOf(n)}:v1` }], namespace: 'default' } }),
  })), server);
  await run('admission-validate', base, sample.map((n) => ({
    method: 'POST', path: '/admission/validate', headers: json, body: JSON.stringify(podReview(n)),
  })), server);

  // Sanity: the answers the load got were real decisions.
  const check = await fetch(`${base}/admission/validate`, { method: 'POST', headers: json, body: JSON.stringify(podReview(7)) }).then((r) => r.json());
  if (check.response?.allowed !== true) throw new Error(`admission check failed: ${JSON.stringify(check)}`);
  const peak = memory(server.pid);
  await stop(server);
  return { results, peakRssMb: peak.peakMb };
}
