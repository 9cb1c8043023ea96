import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { startMoto as startEcrApiMoto } from '../../../services/ecr-api/test/support/moto.js';
import { ROOT } from './kustomize.js';

export interface Running {
  /** http://127.0.0.1:<port> */
  url: string;
  output(): string;
  stop(): Promise<void>;
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

/** moto_server (ECR, STS, IAM emulated) on a free loopback port, as ecr-api's tests start it. */
export async function startMoto(): Promise<Running> {
  const moto = await startEcrApiMoto();
  return { url: moto.endpoint, output: () => moto.output(), stop: () => moto.stop() };
}
