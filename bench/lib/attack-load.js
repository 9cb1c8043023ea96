// The attack section's client, in a process of its own (lib/attack.js). From one address
// (127.0.0.2): SILENT connections that complete their TLS handshake and send nothing, each opened
// again as soon as it is closed, and KEPT connections opened one after another, each sending one
// GET and then kept open. From another address (127.0.0.3), as the API servers would: ROUNDS of
// REVIEWS AdmissionReviews of 7 MB at once, and an ImageReview on a new connection every 100 ms.
// Reads {url, rows} as JSON on stdin (the reviews' images are among the `rows` seeded); prints the counts as one JSON object when the reviews are done.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { exitWithParent } from './orphan.js';
import { admissionReview, imageReview } from './scenarios.js';

const SILENT = 2800;
const KEPT = 12_000;
const ROUNDS = 2;
const REVIEWS = 30;
const ATTACKER = '127.0.0.2';
const CLIENT = '127.0.0.3';

exitWithParent();

let input = '';
for await (const chunk of process.stdin) input += chunk;
const spec = JSON.parse(input);
const url = new URL(spec.url);
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

// The scenarios' Pod, carrying 7 MB of annotations.
const pod = admissionReview(1, spec.rows);
pod.request.object.metadata.annotations = Object.fromEntries(Array.from({ length: 700 }, (_, i) => [`a${i}`, 'x'.repeat(10_000)]));
const big = JSON.stringify(pod);
const reviews = {};
const reviewing = (async () => {
  for (let round = 0; round < ROUNDS; round++) {
    for (const status of await Promise.all(Array.from({ length: REVIEWS }, () => post('/admission/validate', big)))) count(reviews, status);
  }
})();

const small = JSON.stringify(imageReview(1));
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
