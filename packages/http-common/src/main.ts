import { ConfigError } from './config.js';

/** An error and its causes on one line. */
function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const message = e instanceof Error ? e.message : JSON.stringify(e);
    if (!parts.some((p) => p.includes(message))) parts.push(message);
  }
  return parts.join(': ').replace(/\s*\n\s*/g, ' ');
}

/** Entry-point wrapper: prints --help and configuration errors plainly instead of as stack traces. */
export function runMain(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    if (err instanceof ConfigError) {
      (err.exitCode === 0 ? process.stdout : process.stderr).write(`${err.message}\n`);
      process.exit(err.exitCode);
    }
    // One line an operator can read in a crash-looping pod's log; the stack says nothing to them.
    process.stderr.write(`fatal: ${describe(err)}\n`);
    process.exit(1);
  });
}
