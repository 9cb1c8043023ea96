import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';

const children = new Set();

/** Kills every child on exit, error or Ctrl-C. */
export function killAll() {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts a process and waits until its output matches `ready` (or it exits); no `ready`: at once. */
export function start(cmd, args, { ready, env = {}, timeoutMs = 60_000 }) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} ${args.join(' ')} did not start:\n${out}`)), timeoutMs);
    const check = (d) => {
      out += d;
      if (ready?.test(out)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    if (!ready) {
      clearTimeout(timer);
      resolve(child);
    }
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited with ${code}:\n${out}`));
    });
  });
}

export function stop(child) {
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

/** Peak and current resident memory of a process, in MB. */
export function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { peakMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024 };
}

/** Runs lib/load.js in a child process. */
export function load(spec) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [new URL('./load.js', import.meta.url).pathname], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.add(child);
    child.stdin.end(JSON.stringify(spec)); // request bodies can exceed what argv takes
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load exited with ${code}`))));
  });
}
