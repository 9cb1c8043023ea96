import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { homedir } from 'node:os';

export interface Moto {
  /** http://127.0.0.1:<port> */
  endpoint: string;
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

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * Starts `moto_server -H 127.0.0.1 -p <free port>` (ECR, STS and IAM emulated) and waits until it
 * answers: for ecr-api's tests and the deploy tests alike.
 */
export async function startMoto(): Promise<Moto> {
  // MOTO_SERVER, else moto_server on PATH, else pyenv's shim (where the machines have it).
  const candidates = [process.env.MOTO_SERVER, 'moto_server', `${homedir()}/.pyenv/shims/moto_server`].filter((c): c is string =>
    Boolean(c),
  );
  const bin = candidates.find((c) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', c]).status === 0);
  if (!bin) {
    throw new Error(
      `moto_server not found (tried ${candidates.join(', ')}): the ecr-api tests need moto (pip install 'moto[server]'), or MOTO_SERVER=/path/to/moto_server`,
    );
  }
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let output = '';
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output = (output + d).slice(-20_000)));

  const deadline = Date.now() + 30_000;
  while (!(await answers(`${endpoint}/moto-api/`))) {
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`moto_server did not answer on ${endpoint} within 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    endpoint,
    output: () => output,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await once(child, 'exit');
      clearTimeout(timer);
    },
  };
}
