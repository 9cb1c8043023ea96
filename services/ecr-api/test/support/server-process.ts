import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

/** The built entry point, run as an operator would: config file, environment, signals. */
const SERVER_JS = fileURLToPath(new URL('../../dist/server.js', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output: () => string;
}

export function runServer(args: string[], env: Record<string, string> = {}): ServerProcess {
  const child = spawn(process.execPath, [SERVER_JS, ...args], {
    env: { PATH: process.env.PATH ?? '', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return { child, output: () => out };
}

/** Waits for the "Server listening" line and answers the port. */
export async function listeningPort({ child, output }: ServerProcess, scheme = 'http'): Promise<number> {
  const deadline = Date.now() + 20_000;
  const pattern = new RegExp(`Server listening at ${scheme}://127\\.0\\.0\\.1:(\\d+)`);
  for (;;) {
    const match = pattern.exec(output());
    if (match) return Number(match[1]);
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The exit code, once the process has exited (null: killed by a signal). */
export async function exitCode(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
}
