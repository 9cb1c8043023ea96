import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AsyncLocalStorage } from 'node:async_hooks';
import { setMaxListeners } from 'node:events';

/**
 * One deadline per client request for all the AWS calls it makes, retries and backoff included.
 * The SDK's own timeouts bound one attempt only (and `requestTimeout` merely warns unless told to
 * throw), so an endpoint that accepts connections and never answers would otherwise hold a request
 * for attempts x timeouts, or forever. The deadline travels with the request through
 * AsyncLocalStorage, so every SDK call made on its behalf is covered without passing it around.
 */

/** The AWS calls of a request did not finish before its deadline; errors.ts answers 504. */
export class AwsDeadlineExceeded extends Error {
  constructor(readonly deadlineMs: number) {
    super(`AWS did not answer within the request's deadline of ${deadlineMs} ms`);
    this.name = 'AwsDeadlineExceeded';
  }
}

/** A deadline whose timer starts on first use: requests that never call AWS arm no timer. */
export class Deadline {
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** When it expires, on Date.now()'s clock. */
    readonly at: number,
    /** The full length, for messages. */
    readonly totalMs: number,
  ) {}

  static in(ms: number): Deadline {
    return new Deadline(Date.now() + ms, ms);
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      // Every AWS call of the request listens on it (a scan of many repositories makes many);
      // the signal lives as long as one request, so the listeners go with it.
      setMaxListeners(0, controller.signal);
      const fire = () => controller.abort(new AwsDeadlineExceeded(this.totalMs));
      const left = this.at - Date.now();
      if (left <= 0) fire();
      else (this.timer = setTimeout(fire, left)).unref();
    }
    return this.controller.signal;
  }

  /** Stops the timer and cancels what is still running for it (the request is answered). */
  dispose(): void {
    clearTimeout(this.timer);
    this.controller?.abort(new Error('the request this AWS call was made for is answered'));
  }

  /** Whether it has fired (or the request is answered): a call started now would only be aborted. */
  get passed(): boolean {
    return this.signal.aborted;
  }

  /** `work`, or AwsDeadlineExceeded when the deadline comes first (`work` is not cancelled by this). */
  race<T>(work: Promise<T>): Promise<T> {
    const signal = this.signal;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      // Always attached, even when the deadline has already passed: `work` settles later, usually
      // with an AbortError, and a rejection nobody handles takes the whole process down.
      work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

const current = new AsyncLocalStorage<Deadline>();

/** Runs `fn` (and everything it starts) under `deadline`. */
export function withDeadline<T>(deadline: Deadline, fn: () => T): T {
  return current.run(deadline, fn);
}

/** The deadline of the request being served, if any. */
export function currentDeadline(): Deadline | undefined {
  return current.getStore();
}

/**
 * Gives every request of `app` a deadline of `ms` from its arrival for the AWS calls it makes.
 * It is entered in preHandler, after the body is read, as the handler's async context; Fastify
 * runs the handler from within that callback.
 */
export function deadlinePerRequest(app: FastifyInstance, ms: number): void {
  const deadlines = new WeakMap<FastifyRequest, Deadline>();
  app.addHook('onRequest', (request, _reply, done) => {
    deadlines.set(request, Deadline.in(ms));
    done();
  });
  app.addHook('preHandler', (request, _reply, done) => {
    const deadline = deadlines.get(request);
    if (deadline) withDeadline(deadline, done);
    else done();
  });
  app.addHook('onResponse', (request, _reply, done) => {
    deadlines.get(request)?.dispose();
    done();
  });
}
