// The baseline: Fastify's hello world, no logger, in the same Node and the same Fastify as imagelist.
// Also the reference rows: plain Fastify parsing the same admission reviews as imagelist and
// answering them allowed, with nothing else (no schema, no logger, no hooks) — what a JSON body
// costs Fastify itself.
// Usage: node bench/lib/hello.js <port>
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { benchCertificate } from './tls.js';

const require = createRequire(new URL('../../services/imagelist/package.json', import.meta.url));
const Fastify = require('fastify');

// Never outlive the bench that started us.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(3);
}, 1000).unref();

// HTTPS with the run's certificate when the bench serves HTTPS (lib/tls.js), as imagelist does.
const cert = benchCertificate();
const app = Fastify(cert ? { https: { cert: readFileSync(cert.certfile), key: readFileSync(cert.keyfile) } } : {});
app.get('/', async () => ({ hello: 'world' }));
app.post('/admission/imagereview', async () => ({
  apiVersion: 'imagepolicy.k8s.io/v1alpha1',
  kind: 'ImageReview',
  status: { allowed: true },
}));
app.post('/admission/validate', async (request) => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  response: { uid: request.body.request.uid, allowed: true },
}));
// A clean exit on SIGTERM, so `node --cpu-prof` writes its profile.
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
await app.listen({ host: '127.0.0.1', port: Number(process.argv[2]) });
process.stdout.write(`listening fastify ${app.version}\n`);
