// The attack section's attacker, in a process of its own (lib/attack.js), from 127.0.0.2: SILENT
// connections that complete their TLS handshake and send nothing, STALLED ones that send part of a
// ClientHello and nothing more (what OpenSSL allocates for them, glibc keeps), each opened again as
// soon as it is closed, and KEPT connections opened one after another, each sending one GET and then kept
// open. Reads {url} as JSON on stdin; sends 'done' (IPC) once every KEPT connection was tried, goes
// on until SIGTERM, then prints its counts as one JSON object.
import net from 'node:net';
import tls from 'node:tls';
import { readSpec } from './script-spec.js';

const SILENT = 2800;
const STALLED = 3000;
const KEPT = 12_000;
const ATTACKER = '127.0.0.2';

const url = new URL((await readSpec('attack')).url);
const connect = (onReady) => {
  const options = { host: '127.0.0.1', port: Number(url.port), localAddress: ATTACKER };
  const socket =
    url.protocol === 'https:' ? tls.connect({ ...options, rejectUnauthorized: false }, onReady) : net.connect(options, onReady);
  socket.on('error', () => {});
  return socket;
};

let stopping = false;
process.once('SIGTERM', () => (stopping = true));

const silent = { opened: 0 };
function openSilent() {
  if (stopping) return;
  connect(() => silent.opened++).on('close', () => setTimeout(openSilent, 10));
}
for (let i = 0; i < SILENT; i++) setTimeout(openSilent, i);

/** A TLS record header and the first bytes of a ClientHello that announces 512 bytes. */
const PARTIAL_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
const stalled = { opened: 0 };
function openStalled() {
  if (stopping) return;
  const socket = net.connect({ host: '127.0.0.1', port: Number(url.port), localAddress: ATTACKER }, () => {
    stalled.opened++;
    socket.write(PARTIAL_HELLO);
  });
  socket.on('error', () => {});
  socket.on('close', () => setTimeout(openStalled, 10));
}
if (url.protocol === 'https:') for (let i = 0; i < STALLED; i++) setTimeout(openStalled, i);

const kept = { answered: 0, refused: 0, open: new Set() };
function keepOne() {
  return new Promise((resolve) => {
    let done = false;
    const socket = connect(() => socket.write('GET /health/ping HTTP/1.1\r\nHost: attack\r\n\r\n'));
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
for (let i = 0; i < KEPT && !stopping; i += 200) await Promise.all(Array.from({ length: Math.min(200, KEPT - i) }, keepOne));
process.send?.('done');
while (!stopping) await new Promise((r) => setTimeout(r, 50));
process.stdout.write(
  JSON.stringify({
    silentOpened: silent.opened,
    stalledOpened: stalled.opened,
    kept: { answered: kept.answered, refused: kept.refused, stillOpen: kept.open.size },
  }),
);
process.exit(0);
