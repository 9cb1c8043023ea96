// imagelist under the bench: a fresh database, the service as a child process, the seed, and a
// check of each scenario's answers before it is loaded.
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  admissionReview,
  digest,
  imageReview,
  NAMES,
  nameOf,
  putBody,
  SEED_SQL,
  tagsOf,
  JSON_HEADERS,
  WRITE_HEADERS,
  WRITE_TOKEN,
} from './scenarios.js';
import { CPUS, fetchT, freePort, sleep, start } from './procs.js';
import { benchCertificate, scheme } from './tls.js';

const root = new URL('../../', import.meta.url);
const postgres = createRequire(new URL('services/imagelist/package.json', root))('postgres');
const SERVER = new URL('services/imagelist/dist/server.js', root).pathname;
const DB = 'imagelist_bench';

/** Runs `work` on a one-connection client of the admin URL, closed afterwards. */
async function asAdmin(adminUrl, work) {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await work(admin);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** Drops and creates the database `name` (imagelist_bench) next to the admin URL's; returns its URL. */
export async function prepareDatabase(adminUrl, name = DB) {
  await asAdmin(adminUrl, async (admin) => {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${name}`);
  });
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops the database `name` next to the admin URL's. */
export async function dropDatabase(adminUrl, name) {
  await asAdmin(adminUrl, (admin) => admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

/** How deploy/imagelist/base/deployment.yaml runs imagelist (IMAGELIST_LOG_LEVEL, NODE_OPTIONS). */
export const DEPLOYED = { logLevel: 'info', nodeOptions: '--max-semi-space-size=16 --max-old-space-size=256' };

let tokens;
/** A tokens file holding the bench's write token, as the Deployment mounts one: one per run, removed on exit. */
function tokensFile() {
  if (tokens) return tokens;
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-tokens-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  tokens = path.join(dir, 'tokens.yaml');
  writeFileSync(tokens, `tokens:\n  - name: bench-ci\n    token: ${WRITE_TOKEN}\n`);
  return tokens;
}

/**
 * Starts imagelist on a free port of 127.0.0.1 as the Deployment runs it (its log level,
 * NODE_OPTIONS, a tokens file for writes and HTTPS with the run's certificate); ready once
 * /health/ping answers (schema migrated).
 */
export async function startImagelist(databaseUrl, { nodeArgs = [], logLevel = DEPLOYED.logLevel, env = {} } = {}) {
  if (!existsSync(SERVER)) throw new Error(`${SERVER} is missing: run pnpm build`);
  const port = await freePort();
  const base = `${scheme()}://127.0.0.1:${port}`;
  const cert = benchCertificate();
  const tls = cert ? ['--certfile', cert.certfile, '--keyfile', cert.keyfile] : [];
  const child = await start(
    process.execPath,
    [
      ...nodeArgs,
      SERVER,
      '--listen',
      `127.0.0.1:${port}`,
      '--database-url',
      databaseUrl,
      '--log-level',
      logLevel,
      '--tokens-file',
      tokensFile(),
      ...tls,
    ],
    {
      name: 'imagelist',
      // IMAGELIST_NODE_OPTIONS='' measures V8's defaults
      env: {
        NODE_ENV: 'production',
        NODE_OPTIONS: process.env.IMAGELIST_NODE_OPTIONS ?? DEPLOYED.nodeOptions,
        ...env,
      },
      ready: async () => (await fetchT(`${base}/health/ping`, {}, 2000)).ok,
      timeoutMs: 90_000,
      cpu: CPUS?.server,
    },
  );
  return { child, base };
}

/**
 * Seeds `rows` images into the database the running service has migrated, in chunks of 20,000
 * generated inside PostgreSQL (the service's index follows through LISTEN/NOTIFY).
 */
export async function seed(databaseUrl, rows) {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const [{ migrated }] = await sql`SELECT to_regclass('images') IS NOT NULL AS migrated`;
    if (!migrated) throw new Error('imagelist did not create the table images');
    const chunk = 20_000;
    for (let from = 0; from < rows; from += chunk) {
      await sql.unsafe(SEED_SQL, [from, Math.min(rows, from + chunk), rows]);
    }
    const [{ count }] = await sql`SELECT count(*)::int AS count FROM images`;
    if (count !== rows) throw new Error(`seeded ${count} images, wanted ${rows}`);
    await sql`ANALYZE images`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Prometheus text → { 'name{labels}': value } for the metrics whose name matches `re`. */
export function scrape(text, re = /./) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([-+\d.eE]+|NaN|[+-]Inf)$/.exec(line);
    if (m && re.test(m[1])) out[m[1] + (m[2] ?? '')] = Number(m[3]);
  }
  return out;
}

/**
 * Waits until the in-memory index (if the service has one) holds all `rows` and is fresh.
 * Returns how it went, for the report.
 */
export async function waitForIndex(base, rows, timeoutMs = 180_000) {
  const started = Date.now();
  let last = {};
  while (Date.now() - started < timeoutMs) {
    const text = await fetchT(`${base}/metrics`).then(
      (r) => (r.ok ? r.text() : ''),
      () => '',
    );
    last = scrape(text, /^imagelist_index_/);
    if (!('imagelist_index_images' in last)) return { index: false, note: 'no imagelist_index_* metrics: reads go to the database' };
    if (last.imagelist_index_over_limit === 1)
      return { index: false, note: 'the allowlist is larger than --index-max-images: reads go to the database' };
    if (last.imagelist_index_images >= rows && last.imagelist_index_fresh === 1) return { index: true, ms: Date.now() - started };
    await sleep(200);
  }
  throw new Error(`imagelist index did not catch up within ${timeoutMs / 1000} s: ${JSON.stringify(last)}`);
}

const post = (base, path, body) => fetchT(`${base}${path}`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body) });

async function answer(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Sends a few of the scenario's requests and checks the answers are real ones, so a load of fast
 * errors is never reported as a result. Returns {ok: true} or {ok: false, status, reason}.
 */
export async function probe(scenario, base, rows) {
  const fail = (res, body, why) => ({
    ok: false,
    status: res.status,
    reason: `${why}: HTTP ${res.status} ${JSON.stringify(body).slice(0, 300)}`,
  });
  const samples = [1, Math.floor(rows / 2), rows - 1];
  switch (scenario) {
    case 'get-by-name': {
      for (const n of samples) {
        const res = await fetchT(`${base}/images?name=${encodeURIComponent(nameOf(n))}`);
        const body = await answer(res);
        const want = Math.floor(rows / NAMES) + (n % NAMES < rows % NAMES ? 1 : 0);
        if (!res.ok || !Array.isArray(body) || body.length !== want || body[0].name !== nameOf(n))
          return fail(res, body, `GET /images?name=${nameOf(n)} should list ${want} images`);
      }
      return { ok: true, note: `${Math.floor(rows / NAMES)} images per name` };
    }
    case 'get-by-id': {
      for (const n of samples) {
        const res = await fetchT(`${base}/images/${digest(n)}`);
        const body = await answer(res);
        if (!res.ok || body.id !== digest(n) || body.name !== nameOf(n) || String(body.tags) !== String(tagsOf(n, rows)))
          return fail(res, body, `GET /images/${digest(n)}`);
      }
      return { ok: true };
    }
    case 'put': {
      for (const c of [0, 1]) {
        const sent = putBody(c, rows, 'probe');
        const res = await fetchT(`${base}/images`, { method: 'PUT', headers: WRITE_HEADERS, body: JSON.stringify(sent) });
        const body = await answer(res);
        if (!res.ok || body.id !== sent.id || String(body.tags) !== String(sent.tags)) return fail(res, body, 'PUT /images');
      }
      // the token is checked: a write without it is refused
      const res = await fetchT(`${base}/images`, { method: 'PUT', headers: JSON_HEADERS, body: JSON.stringify(putBody(2, rows, 'probe')) });
      if (res.status !== 401) return fail(res, await answer(res), 'PUT /images without the token should be refused 401');
      return { ok: true };
    }
    case 'admission-imagereview': {
      const allowed = imageReview(1);
      if (allowed.spec.containers[0].image !== 'registry.example.com/team-1/app-1:v1')
        throw new Error('bench data no longer has team-1/app-1:v1');
      for (const review of [allowed, imageReview(rows - 1)]) {
        const res = await post(base, '/admission/imagereview', review);
        const body = await answer(res);
        if (res.status === 404)
          return { ok: false, status: 404, notAvailable: true, reason: 'POST answered 404: endpoint not there (yet)' };
        if (!res.ok || body.apiVersion !== review.apiVersion || body.kind !== 'ImageReview' || body.status?.allowed !== true)
          return fail(res, body, `ImageReview of ${review.spec.containers[0].image} should be allowed`);
      }
      const denied = {
        ...allowed,
        spec: { ...allowed.spec, containers: [{ image: 'registry.example.com/team-1/app-1:not-on-the-list' }] },
      };
      const res = await post(base, '/admission/imagereview', denied);
      const body = await answer(res);
      if (!res.ok || body.status?.allowed !== false) return fail(res, body, 'ImageReview of an unlisted tag should be denied');
      return { ok: true };
    }
    case 'admission-validate': {
      for (const n of samples) {
        const review = admissionReview(n, rows);
        const res = await post(base, '/admission/validate', review);
        const body = await answer(res);
        if (res.status === 404)
          return { ok: false, status: 404, notAvailable: true, reason: 'POST answered 404: endpoint not there (yet)' };
        if (!res.ok || body.kind !== 'AdmissionReview' || body.response?.uid !== review.request.uid || body.response?.allowed !== true)
          return fail(res, body, 'AdmissionReview of a listed Pod should be allowed');
      }
      const review = admissionReview(1, rows);
      review.request.object.spec.containers[1].image = `${nameOf(1)}@sha256:${'0'.repeat(64)}`;
      const res = await post(base, '/admission/validate', review);
      const body = await answer(res);
      if (!res.ok || body.response?.allowed !== false) return fail(res, body, 'AdmissionReview with an unlisted digest should be denied');
      return { ok: true };
    }
    default:
      return { ok: true };
  }
}

/** The service's own heap figures (prom-client default metrics), in MB; {} if it exports none. */
export async function heapStats(base) {
  const text = await fetchT(`${base}/metrics`).then(
    (r) => (r.ok ? r.text() : ''),
    () => '',
  );
  const m = scrape(text, /^(nodejs_heap_size_(used|total)_bytes|nodejs_external_memory_bytes|process_resident_memory_bytes)$/);
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k.replace(/_bytes$/, 'Mb'), Math.round(v / 2 ** 20)]));
}
