// Child processes of the bench: started, awaited and always killed (on exit, error, SIGINT/SIGTERM
// and the overall deadline), plus free ports and the memory of a process.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { availableParallelism } from 'node:os';

const children = new Set();

/**
 * CPU pinning: the measured server on one core, the load generator on the other, so that neither
 * is moved between cores, or onto the other's core, during a run. Unpinned, two runs of the same
 * build on this 2-core machine differed by up to 40% in CPU per request; pinned, two instances of
 * one build measured 32.1 and 31.4 us (the host's other tenants still move both sides).
 * Off with BENCH_PIN=0, on a machine with one core, or without taskset (util-linux).
 */
const PIN = process.env.BENCH_PIN !== '0' && availableParallelism() >= 2 && !spawnSync('taskset', ['--version']).error;
export const CPUS = PIN ? { server: '0', load: '1' } : undefined;

/**
 * The command and arguments that run `cmd` on `cpu` (taskset execs it: the pid stays the
 * command's); as it is without a cpu, which callers pass as CPUS?.server or CPUS?.load.
 */
function onCpu(cpu, cmd, args) {
  return cpu === undefined ? [cmd, args] : ['taskset', ['-c', cpu, cmd, ...args]];
}

/** SIGKILLs every child still running; safe to call more than once. */
export function killAll() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    process.stderr.write(`\nbench: ${sig}, stopping every child process\n`);
    killAll();
    process.exit(130);
  });
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const TAIL = 16 * 1024;

/**
 * Starts a long-running process. Its output is drained (a full pipe would stall it) and the last
 * 16 KiB kept in `child.output()` for error messages. Resolves once `ready()` (polled) is true or
 * its output matches the `ready` RegExp; rejects if it exits first or after `timeoutMs`. With
 * `cpu` (CPUS.server), it runs pinned to that core.
 */
export function start(cmd, args, { name = cmd, ready, env = {}, timeoutMs = 60_000, cpu } = {}) {
  const child = spawn(...onCpu(cpu, cmd, args), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  const keep = (d) => {
    out = (out + d).slice(-TAIL);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.output = () => out;
  child.label = name;

  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      if (err) {
        stop(child);
        reject(err);
      } else {
        resolve(child);
      }
    };
    const timer = setTimeout(() => finish(new Error(`${name} did not become ready within ${timeoutMs / 1000} s:\n${out}`)), timeoutMs);
    child.on('error', (err) => finish(new Error(`${name}: ${err.message}`)));
    child.on('exit', (code, signal) => finish(new Error(`${name} exited (${signal ?? code}) before it was ready:\n${out}`)));
    let poll;
    if (ready instanceof RegExp) {
      const check = () => ready.test(out) && finish();
      child.stdout.on('data', check);
      child.stderr.on('data', check);
    } else if (typeof ready === 'function') {
      let busy = false;
      poll = setInterval(async () => {
        if (busy || done) return;
        busy = true;
        try {
          if (await ready()) finish();
        } catch {
          // not yet
        } finally {
          busy = false;
        }
      }, 100);
    } else {
      finish();
    }
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export function stop(child, graceMs = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(kill);
      children.delete(child);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Peak (VmHWM) and current (VmRSS) resident memory of a live process, in MB. */
export function memory(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    return { peakRssMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024 };
  } catch {
    return { peakRssMb: NaN, rssMb: NaN };
  }
}

/**
 * Runs one load (lib/load.js) in its own process, so the load generator never shares an event loop
 * with the bench or the server. Killed if it overruns its duration by more than 30 s.
 */
export function load(spec) {
  // wrk, its child, inherits the core
  return runScript(new URL('./load.js', import.meta.url), spec, {
    name: 'load generator',
    limitMs: (spec.duration + 30) * 1000,
    cpu: CPUS?.load,
  });
}

/**
 * Runs the script at `url` in its own process (killed with the bench, or once it overruns `limitMs`,
 * on `cpu` if given): the spec goes in as JSON on stdin, the result comes back as JSON on stdout.
 * A script that runs until told: `onMessage` gets what it sends (IPC), and it is sent SIGTERM
 * once `stop` (a promise) settles.
 */
export function runScript(url, spec, { name, limitMs, cpu, onMessage, stop }) {
  return new Promise((resolve, reject) => {
    const child = spawn(...onCpu(cpu, process.execPath, [url.pathname]), {
      stdio: ['pipe', 'pipe', 'pipe', ...(onMessage ? ['ipc'] : [])],
    });
    children.add(child);
    if (onMessage) child.on('message', onMessage);
    stop?.finally(() => child.kill('SIGTERM'));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} overran ${limitMs / 1000} s`));
    }, limitMs);
    child.stdin.end(JSON.stringify(spec));
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err = (err + d).slice(-TAIL)));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      if (code === 0) {
        try {
          resolve(JSON.parse(out));
        } catch (e) {
          reject(new Error(`${name} printed no result (${e.message}):\n${out}\n${err}`));
        }
      } else {
        reject(new Error(`${name} exited (${signal ?? code}):\n${err}`));
      }
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The median of a list of numbers. */
export const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

/** fetch with a deadline (every request of the bench is bounded). */
export function fetchT(url, init = {}, timeoutMs = 10_000) {
  return fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** CPU time (user + system, ms) a process has used so far; NaN once it is gone. */
export function cpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS; // utime, stime
  } catch {
    return NaN;
  }
}

/** CPU time (ms) of every process named `comm` (e.g. all PostgreSQL backends), live ones only. */
export function cpuMsOf(comm) {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== comm) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * TICK_MS; // + reaped children
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** Machine-wide CPU counters from /proc/stat (ms, summed over cores). */
export function machineCpuMs() {
  const [, ...f] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const n = f.map(Number);
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0) * TICK_MS;
  const idle = (n[3] + n[4]) * TICK_MS;
  return { busy: total - idle, total };
}
