import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import { ROOT } from './kustomize.js';

export interface Running {
  /** http://127.0.0.1:<port> */
  url: string;
  output(): string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await once(child, 'exit');
  clearTimeout(timer);
}

/**
 * Starts a built service (`services/<name>/dist/server.js`) as the container does, and waits
 * until it logs the address it listens on.
 */
export async function startService(name: string, args: string[], env: Record<string, string> = {}): Promise<Running> {
  const entry = path.join(ROOT, 'services', name, 'dist', 'server.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run pnpm build first`);
  const child = spawn(process.execPath, [entry, ...args], {
    env: { PATH: process.env.PATH ?? '', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const deadline = Date.now() + 60_000;
  let match: RegExpMatchArray | null;
  while (!(match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out))) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not start within 60 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: match[1]!, output: () => out, stop: () => stopChild(child) };
}

/** moto_server (ECR, STS, IAM emulated) on a free loopback port, found as ecr-api's tests find it. */
export async function startMoto(): Promise<Running> {
  const candidates = [process.env.MOTO_SERVER, 'moto_server', `${homedir()}/.pyenv/shims/moto_server`].filter((c): c is string =>
    Boolean(c),
  );
  const bin = candidates.find((c) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', c]).status === 0);
  if (!bin) throw new Error(`moto_server not found (tried ${candidates.join(', ')}): pip install 'moto[server]'`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out = (out + d).slice(-20_000)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(1000) })).ok) break;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`moto_server did not answer within 30 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, output: () => out, stop: () => stopChild(child) };
}
