// One load run in its own process (so the load generator never shares an event loop with the bench
// or the server). Reads {url, scenario, rows, connections, duration, loader} as JSON on stdin,
// builds the scenario's requests (lib/scenarios.js), runs autocannon (default) or wrk, and prints
// the result as one JSON object on stdout.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { requestsFor } from './scenarios.js';
import { readSpec } from './script-spec.js';

const spec = await readSpec('load');

/** CPU (ms) this process (self) and its reaped children, i.e. wrk (children), have used. */
function cpuMs() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  return { self: (f[11] + f[12]) * 10, children: (f[13] + f[14]) * 10 };
}

async function runAutocannon() {
  const requests = requestsFor(spec.scenario, spec.rows);
  const cpu0 = cpuMs().self;
  const result = await autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: spec.duration,
    requests,
    timeout: 10,
  });
  return {
    loaderCpuMs: cpuMs().self - cpu0,
    requests: result.requests.total,
    durationS: result.duration,
    // autocannon keeps latencies in whole milliseconds
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    max: result.latency.max,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, v]) => [code, v.count])),
    bytesPerSecond: result.throughput.average,
  };
}

/** wrk (Debian's package) with one thread: far less CPU per request than autocannon. */
async function runWrk() {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-wrk-'));
  try {
    let list = requestsFor(spec.scenario, spec.rows);
    if (list.length === 1 && list[0].setupRequest) {
      // wrk cannot run our JS per request: materialise enough of them (new ids repeat after that)
      const count = Math.min(400_000, spec.duration * 25_000);
      list = Array.from({ length: count }, () => list[0].setupRequest({ ...list[0] }));
    }
    const file = path.join(dir, 'requests.tsv');
    writeFileSync(file, list.map((r) => `${r.method}\t${r.path}\t${r.body ?? ''}\t${r.headers?.authorization ?? ''}`).join('\n') + '\n');
    const threads = String(spec.threads ?? 1);
    const args = [
      '-t',
      threads,
      '-c',
      String(spec.connections),
      '-d',
      `${spec.duration}s`,
      '--timeout',
      '10s',
      '-s',
      new URL('./wrk.lua', import.meta.url).pathname,
      spec.url,
      '--',
      file,
    ];
    const cpu0 = cpuMs().children;
    const out = await new Promise((resolve, reject) => {
      const child = spawn(process.env.WRK ?? 'wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}:\n${text}`))));
    });
    const line = out.split('\n').find((l) => l.startsWith('{"requests"'));
    if (!line) throw new Error(`wrk printed no result:\n${out}`);
    const r = JSON.parse(line);
    const durationS = r.durationUs / 1e6;
    return { ...r, durationS, bytesPerSecond: r.bytes / durationS, statusCodes: {}, loaderCpuMs: cpuMs().children - cpu0 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const r = spec.loader === 'wrk' ? await runWrk() : await runAutocannon();
process.stdout.write(JSON.stringify({ ...r, rps: r.requests / r.durationS }));
