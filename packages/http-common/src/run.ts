import closeWithGrace from 'close-with-grace';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { EventEmitter } from 'node:events';
import { pino } from 'pino';

/**
 * How long a signalled close first keeps answering on open connections, with `Connection: close`,
 * so that kept-alive clients close them themselves (app.ts, `drain`). 2 s: a client that sends at
 * least every 2 s (the API server calling a webhook under load) has moved off by then; one idle
 * that long is unlikely to send at the very moment its connection closes. Inside the 10 s grace.
 */
const DRAIN_MS = 2000;

/**
 * How long the exit waits for the log's last writes. pino writes what it still holds
 * synchronously at exit, and its sonic-boom (v4) retries a failed write for ever, a broken pipe
 * too: with the reader of stdout gone (`| head`), SIGTERM left the process waiting in
 * `Atomics.wait` for good. Written before the exit, a broken pipe fails once, and pino then stops
 * writing to it. A write to a pipe takes well under a millisecond.
 */
const LOG_WRITTEN_MS = 250;

/** Resolves once pino's destination has written what it holds ('drain') or failed ('error'), or after `ms`. */
function logWritten(log: FastifyBaseLogger, ms: number): Promise<void> {
  const stream = (log as unknown as Record<symbol, unknown>)[pino.symbols.streamSym];
  if (!(stream instanceof EventEmitter)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stream.off('drain', done);
      stream.off('error', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stream.once('drain', done);
    stream.once('error', done);
  });
}

/**
 * Listens, and on SIGTERM/SIGINT drains kept-alive connections (`drainMs`), stops taking new
 * connections, lets in-flight requests finish, runs the app's onClose hooks (database pools,
 * watchers) and exits; a second signal or the grace delay forces the exit.
 */
export async function listenWithGrace(
  app: FastifyInstance,
  where: { host: string; port: number },
  opts: {
    graceMs?: number;
    drainMs?: number;
    /**
     * Rejections nobody awaited, and errors nobody listened for, that are not a fault of the
     * service, logged and survived rather than closing the process: postgres.js starts a query of
     * its own on each new connection (its array types) and leaves its rejection unhandled when the
     * connection drops meanwhile, and it stops listening to a TLS connection it has closed, whose
     * last write can still fail afterwards.
     */
    survivable?: (reason: unknown) => boolean;
  } = {},
): Promise<void> {
  let fatal: unknown;
  let closing = false;
  const survived = (reason: unknown, what: string) => {
    if (!opts.survivable?.(reason)) return false;
    const { code, syscall } = (reason ?? {}) as { code?: unknown; syscall?: unknown };
    app.log.warn({ code, syscall }, `a connection failed ${what}; continuing`);
    return true;
  };
  const onRejection = (reason: unknown) => {
    if (!survived(reason, 'under a query nobody awaited')) throw reason; // an uncaught exception, closed as below
  };
  const onException = (error: unknown) => {
    if (survived(error, 'after it was closed')) return;
    if (closing) process.exit(1); // one while closing, as close-with-grace does
    fatal = error;
    void grace.close();
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  const closeOn = { delay: opts.graceMs ?? 10_000, logger: app.log, skip: ['unhandledRejection' as const, 'uncaughtException' as const] };
  const grace = closeWithGrace(closeOn, async ({ err = fatal, signal }) => {
    closing = true;
    const started = Date.now();
    if (err) {
      app.log.error({ err }, 'closing after a fatal error');
    } else {
      app.log.info({ signal }, 'shutting down');
      await app.drain(opts.drainMs ?? DRAIN_MS);
    }
    await app.close();
    // The last line: an operator can tell a clean close from one the grace cut short.
    app.log.info({ ms: Date.now() - started }, 'shut down');
    await logWritten(app.log, LOG_WRITTEN_MS);
    // close-with-grace exits 1 after an error it caught itself, and 0 after a close asked for.
    if (fatal !== undefined) process.exit(1);
  });
  app.addHook('onClose', async () => {
    grace.uninstall();
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  });
  await app.listen(where);
}
