// The attack section's other client, as the API servers would be (lib/attack.js), from
// 127.0.0.3, in one of two parts, each a process of its own so that neither the attacker's work
// nor the other part's delays it: `large` sends ROUNDS of REVIEWS AdmissionReviews of 7 MB at once
// and says 'done' (IPC) once they are answered; `image` sends an ImageReview on a new connection
// every 100 ms and says 'done' at once. Each goes on until SIGTERM, then prints its counts as one
// JSON object. Reads {url, rows, part} as JSON on stdin (the reviews' images are among the `rows`
// seeded). An API server's requests do not wait for each other (Go); in one Node process, the
// ImageReviews waited behind the TLS encryption of the 210 MB of large reviews (stalls of 2-3.3 s).
import http from 'node:http';
import https from 'node:https';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { admissionReview, imageReview } from './scenarios.js';
import { readSpec } from './script-spec.js';

const ROUNDS = 2;
const REVIEWS = 30;
const CLIENT = '127.0.0.3';

const spec = await readSpec('attack');
const url = new URL(spec.url);
const client = url.protocol === 'https:' ? https : http;

let stopping = false;
process.once('SIGTERM', () => (stopping = true));

const agent = new client.Agent({ keepAlive: false, maxSockets: 100, localAddress: CLIENT });
function post(path, body) {
  return new Promise((resolve) => {
    const request = client.request(
      {
        host: '127.0.0.1',
        port: Number(url.port),
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

// This process's longest stall: one past the server's timeouts makes the server's answers look lost.
const stalls = monitorEventLoopDelay({ resolution: 10 });

if (spec.part === 'large') {
  // The scenarios' Pod, carrying 7 MB of annotations. Encoded once: 30 strings of 7 MB encoded at
  // each send stalled this process for up to 7 s, past the server's 5 s TLS handshake timeout.
  const pod = admissionReview(1, spec.rows);
  pod.request.object.metadata.annotations = Object.fromEntries(Array.from({ length: 700 }, (_, i) => [`a${i}`, 'x'.repeat(10_000)]));
  const big = Buffer.from(JSON.stringify(pod));
  stalls.enable();
  const reviews = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const status of await Promise.all(Array.from({ length: REVIEWS }, () => post('/admission/validate', big)))) count(reviews, status);
  }
  process.send?.('done');
  while (!stopping) await new Promise((r) => setTimeout(r, 50));
  finish({ bigReviews: reviews, bigReviewMb: Math.round(big.length / 1e5) / 10 });
} else {
  stalls.enable();
  process.send?.('done');
  const small = JSON.stringify(imageReview(1));
  const probes = {};
  while (!stopping) {
    count(probes, await post('/admission/imagereview', small));
    await new Promise((r) => setTimeout(r, 100));
  }
  finish({ imageReviews: probes });
}

/** Prints the part's counts and its longest stall (named by part, as attack.js merges both). */
function finish(counts) {
  process.stdout.write(JSON.stringify({ ...counts, [`${spec.part}ClientStallMs`]: Math.round(stalls.max / 1e6) }));
  process.exit(0);
}
