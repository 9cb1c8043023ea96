// The attack section's client, in a process of its own (lib/attack.js). From one address
// (127.0.0.2): SILENT connections that complete their TLS handshake and send nothing, each opened
// again as soon as it is closed, and KEPT connections opened one after another, each sending one
// GET and then kept open. From another address (127.0.0.3), as the API servers would: ROUNDS of
// REVIEWS AdmissionReviews of 7 MB at once, and an ImageReview on a new connection every 100 ms.
// Reads {url} as JSON on stdin; prints the counts as one JSON object when the reviews are done.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

const SILENT = 2800;
const KEPT = 12_000;
const ROUNDS = 2;
const REVIEWS = 30;
const ATTACKER = '127.0.0.2';
const CLIENT = '127.0.0.3';

// Never outlive the bench that started us.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(3);
}, 1000).unref();

let input = '';
for await (const chunk of process.stdin) input += chunk;
const url = new URL(JSON.parse(input).url);
if (url.hostname !== '127.0.0.1') throw new Error(`attack only 127.0.0.1, not ${url.host}`);
const secure = url.protocol === 'https:';
const port = Number(url.port);
const connect = (from, onReady) => {
  const options = { host: '127.0.0.1', port, localAddress: from };
  const socket = secure ? tls.connect({ ...options, rejectUnauthorized: false }, onReady) : net.connect(options, onReady);
  socket.on('error', () => {});
  return socket;
};

let stopping = false;
const silent = { opened: 0 };
function openSilent() {
  if (stopping) return;
  connect(ATTACKER, () => silent.opened++).on('close', () => setTimeout(openSilent, 10));
}
for (let i = 0; i < SILENT; i++) setTimeout(openSilent, i);

const kept = { answered: 0, refused: 0, open: new Set() };
function keepOne() {
  return new Promise((resolve) => {
    let done = false;
    const socket = connect(ATTACKER, () => socket.write('GET /health/ping HTTP/1.1\r\nHost: attack\r\n\r\n'));
    socket.on('data', () => {
      if (done) return;
      done = true;
      kept.answered++;
      kept.open.add(socket);
      resolve();
    });
    socket.on('close', () => {
      kept.open.delete(socket);
      if (done) return;
      done = true;
      kept.refused++;
      resolve();
    });
  });
}
const keeping = (async () => {
  for (let i = 0; i < KEPT; i += 200) await Promise.all(Array.from({ length: Math.min(200, KEPT - i) }, keepOne));
})();

const agent = new (secure ? https : http).Agent({ keepAlive: false, maxSockets: 100, localAddress: CLIENT });
function post(path, body) {
  return new Promise((resolve) => {
    const request = (secure ? https : http).request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent,
        rejectUnauthorized: false,
        timeout: 60_000,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.statusCode)));
      },
    );
    request.on('error', (err) => resolve(err.code ?? 'error'));
    request.on('timeout', () => request.destroy());
    request.end(body);
  });
}
const count = (tally, key) => (tally[key] = (tally[key] ?? 0) + 1);

const big = JSON.stringify({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: '00000000-0000-4000-8000-000000000001',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    operation: 'CREATE',
    namespace: 'default',
    userInfo: { username: 'bench' },
    object: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'big', annotations: Object.fromEntries(Array.from({ length: 700 }, (_, i) => [`a${i}`, 'x'.repeat(10_000)])) },
      spec: { containers: [{ name: 'app', image: 'registry.example.com/team-1/app-1:v1' }] },
    },
  },
});
const reviews = {};
const reviewing = (async () => {
  for (let round = 0; round < ROUNDS; round++) {
    for (const status of await Promise.all(Array.from({ length: REVIEWS }, () => post('/admission/validate', big)))) count(reviews, status);
  }
})();

const small = JSON.stringify({
  apiVersion: 'imagepolicy.k8s.io/v1alpha1',
  kind: 'ImageReview',
  spec: { containers: [{ image: 'registry.example.com/team-1/app-1:v1' }] },
});
const probes = {};
const probing = (async () => {
  while (!stopping) {
    count(probes, await post('/admission/imagereview', small));
    await new Promise((r) => setTimeout(r, 100));
  }
})();

await Promise.all([keeping, reviewing]);
stopping = true;
await probing;
process.stdout.write(
  JSON.stringify({
    silentOpened: silent.opened,
    kept: { answered: kept.answered, refused: kept.refused, stillOpen: kept.open.size },
    bigReviews: reviews,
    bigReviewMb: Math.round(big.length / 1e5) / 10,
    imageReviews: probes,
  }),
);
process.exit(0);
