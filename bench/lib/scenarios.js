// The seeded data set and the requests of each imagelist scenario. Used by the bench (seeding and
// probing) and by the load generator (lib/load.js), so both always agree on what exists.
import { createHash } from 'node:crypto';

/** Distinct image names: registry.example.com/team-<n % 500>/app-<n % NAMES>. */
export const NAMES = 2000;

export const digest = (n) => createHash('sha256').update(String(n)).digest('hex');
export const nameOf = (n) => `registry.example.com/team-${n % 500}/app-${n % NAMES}`;
/** Generation of image n within its name: v1 for n < NAMES, v2 for the next NAMES, … */
const generation = (n) => Math.floor(n / NAMES) + 1;
/**
 * Tags of seeded image n: `v<generation>`, `build-<n>`, and `latest` on the newest image of each
 * name. So `<name>:v1`, `<name>:v2` (rows >= 2 * NAMES) and `<name>:latest` all exist, e.g.
 * registry.example.com/team-1/app-1:v1 is image 1.
 */
export const tagsOf = (n, rows) => [`v${generation(n)}`, `build-${n}`, ...(n + NAMES >= rows ? ['latest'] : [])];

/** The same rows as tagsOf/nameOf/digest, generated inside PostgreSQL (one statement, no round trips). */
export const SEED_SQL = `
  INSERT INTO images (id, name, tags, created_at, updated_at)
  SELECT encode(sha256(i::text::bytea), 'hex'),
         'registry.example.com/team-' || (i % 500) || '/app-' || (i % ${NAMES}),
         ARRAY['v' || (i / ${NAMES} + 1), 'build-' || i]
           || CASE WHEN i + ${NAMES} >= $3::int THEN ARRAY['latest'] ELSE ARRAY[]::text[] END,
         now() - ($3::int - i) * interval '1 second',
         now() - ($3::int - i) * interval '1 second'
  FROM generate_series($1::int, $2::int - 1) AS i`;

/** In the order they run: `put` last, since it adds images (and memory) the others would see. */
export const SCENARIOS = [
  'baseline',
  'fastify-imagereview',
  'fastify-validate',
  'node-imagereview',
  'get-by-name',
  'get-by-id',
  'admission-imagereview',
  'admission-validate',
  'put',
];
/**
 * Reference rows (lib/hello.js) answering the same reviews as imagelist's scenario: plain Fastify,
 * and Node's own https server with no framework (`node-`).
 */
export const REFERENCES = {
  'fastify-imagereview': 'admission-imagereview',
  'fastify-validate': 'admission-validate',
  'node-imagereview': 'admission-imagereview',
};

/** How many distinct requests a scenario rotates over. */
const ROTATION = 1000;
/** Spread `count` seeded images evenly over [0, rows). */
const sample = (rows, count = Math.min(ROTATION, rows)) => Array.from({ length: count }, (_, k) => Math.floor(((k + 0.5) * rows) / count));
export const JSON_HEADERS = { 'content-type': 'application/json' };
/**
 * The bearer token of the bench's writes: imagelist runs with a tokens file holding it, as the
 * Deployment runs it with one (lib/imagelist.js), so a PUT is measured with its token check.
 */
export const WRITE_TOKEN = 'bench-ci-4Jq8vXo2kR7tLw9mZc3nHs6dFy1pGb5e';
export const WRITE_HEADERS = { ...JSON_HEADERS, authorization: `Bearer ${WRITE_TOKEN}` };

export function imageReview(n) {
  return {
    apiVersion: 'imagepolicy.k8s.io/v1alpha1',
    kind: 'ImageReview',
    spec: { containers: [{ image: `${nameOf(n)}:v${generation(n)}` }], namespace: 'default' },
  };
}

/** An AdmissionReview of a Pod with two containers: one by tag, one by digest. */
export function admissionReview(n, rows) {
  const other = (n + 7919) % rows;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: `web-${n}`,
      namespace: 'default',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts'] },
      object: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `web-${n}`, namespace: 'default', labels: { app: `app-${n % NAMES}` } },
        spec: {
          containers: [
            { name: 'app', image: `${nameOf(n)}:v${generation(n)}`, ports: [{ containerPort: 8080 }] },
            { name: 'proxy', image: `${nameOf(other)}@sha256:${digest(other)}` },
          ],
        },
      },
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

/** One PUT body: even calls a new image (a CI push), odd calls rewrite an existing one unchanged. */
export function putBody(c, rows, salt) {
  if (c % 2 === 0) {
    const n = (c * 7) % rows;
    return { id: digest(`new-${salt}-${c}`), name: nameOf(n), tags: [`ci-${c}`] };
  }
  const n = (c * 7919) % rows;
  return { id: digest(n), name: nameOf(n), tags: tagsOf(n, rows) };
}

/**
 * The autocannon `requests` of a scenario (each connection walks the list from the start and wraps
 * around). `put` builds every request anew so new ids never repeat.
 */
export function requestsFor(scenario, rows, salt = `${process.pid}-${Date.now()}`) {
  if (REFERENCES[scenario]) return requestsFor(REFERENCES[scenario], rows, salt);
  switch (scenario) {
    case 'baseline':
      return [{ method: 'GET', path: '/' }];
    case 'get-by-name':
      // one rotation of names: each has rows / NAMES images
      return sample(Math.min(rows, NAMES), Math.min(ROTATION, rows, NAMES)).map((n) => ({
        method: 'GET',
        path: `/images?name=${encodeURIComponent(nameOf(n))}`,
      }));
    case 'get-by-id':
      return sample(rows).map((n) => ({ method: 'GET', path: `/images/${digest(n)}` }));
    case 'put': {
      let c = 0;
      return [
        {
          method: 'PUT',
          path: '/images',
          headers: WRITE_HEADERS,
          setupRequest: (req) => ({ ...req, body: JSON.stringify(putBody(c++, rows, salt)) }),
        },
      ];
    }
    case 'admission-imagereview':
      return sample(rows).map((n) => ({
        method: 'POST',
        path: '/admission/imagereview',
        headers: JSON_HEADERS,
        body: JSON.stringify(imageReview(n)),
      }));
    case 'admission-validate':
      return sample(rows).map((n) => ({
        method: 'POST',
        path: '/admission/validate',
        headers: JSON_HEADERS,
        body: JSON.stringify(admissionReview(n, rows)),
      }));
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}
