// The baseline: Fastify's hello world, no logger, in the same Node and the same Fastify as imagelist.
// Also the reference rows: plain Fastify parsing the same admission reviews as imagelist and
// answering them allowed, with nothing else (no schema, no logger, no hooks) — what a JSON body
// costs Fastify itself.
// A third reference, on its own port: Node's own https server answering the ImageReview, with no
// framework at all (read the body, JSON.parse, answer allowed): what the request costs Node itself.
// Usage: node bench/lib/hello.js <port> <plain Node port>
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import { exitWithParent } from './orphan.js';
import { benchCertificate } from './tls.js';

const require = createRequire(new URL('../../services/imagelist/package.json', import.meta.url));
const Fastify = require('fastify');

exitWithParent();

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
const REVIEWED = JSON.stringify({ apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', status: { allowed: true } });
const plainNode = (
  cert ? https.createServer.bind(null, { cert: readFileSync(cert.certfile), key: readFileSync(cert.keyfile) }) : http.createServer
)((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    try {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(REVIEWED) });
    res.end(REVIEWED);
  });
});
plainNode.keepAliveTimeout = 95_000;
process.on('SIGTERM', () => plainNode.close());
await new Promise((resolve) => plainNode.listen(Number(process.argv[3]), '127.0.0.1', resolve));
await app.listen({ host: '127.0.0.1', port: Number(process.argv[2]) });
process.stdout.write(`listening fastify ${app.version}\n`);
