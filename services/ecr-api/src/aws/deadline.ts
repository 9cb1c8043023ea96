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

/** The service is closing and no longer waits for AWS: errors.ts answers 503 (retry elsewhere). */
export class ServiceClosing extends Error {
  constructor() {
    super('the service is shutting down; the AWS calls still running were cancelled');
    this.name = 'ServiceClosing';
  }
}

/** Deadlines that can all be ended at once, before their time (the app closing). */
export class DeadlineGroup {
  private readonly running = new Set<Deadline>();
  private reason: Error | undefined;

  /** A deadline of `ms` from now that `end` also ends. */
  deadline(ms: number): Deadline {
    return new Deadline(Date.now() + ms, ms, this);
  }

  /** Ends every deadline of the group with `reason`, those armed later too. */
  end(reason: Error): void {
    this.reason = reason;
    for (const deadline of this.running) deadline.end(reason);
  }

  /**
   * A deadline arms its timer: kept until it fires or ends, so the group holds only deadlines
   * whose timer still runs (a request whose client went away is never disposed). Answers the
   * reason when the group has ended already.
   */
  arm(deadline: Deadline, signal: AbortSignal): Error | undefined {
    if (this.reason) return this.reason;
    this.running.add(deadline);
    signal.addEventListener('abort', () => this.running.delete(deadline), { once: true });
    return undefined;
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
    private readonly group?: DeadlineGroup,
    /** A deadline this one ends with, whichever comes first (`before`). */
    private readonly outer?: Deadline,
  ) {}

  static in(ms: number): Deadline {
    return new Deadline(Date.now() + ms, ms);
  }

  /**
   * A deadline `ms` before this one, ending with it too (a shutdown ends both): the share of a
   * request's time a change may spend, leaving the rest for its undo. Its message names this one's
   * length, the time the client was promised an answer within.
   */
  before(ms: number): Deadline {
    return new Deadline(this.at - ms, this.totalMs, undefined, this);
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      // Every AWS call of the request listens on it (a scan of many repositories makes many);
      // the signal lives as long as one request, so the listeners go with it.
      setMaxListeners(0, controller.signal);
      const fire = () => controller.abort(new AwsDeadlineExceeded(this.totalMs));
      const ended = this.group?.arm(this, controller.signal) ?? this.follow(controller);
      const left = this.at - Date.now();
      if (ended) controller.abort(ended);
      else if (left <= 0) fire();
      else (this.timer = setTimeout(fire, left)).unref();
    }
    return this.controller.signal;
  }

  /** Ends `controller` when the outer deadline ends; answers its reason when it has already. */
  private follow(controller: AbortController): Error | undefined {
    if (!this.outer) return undefined;
    const outer = this.outer.signal;
    if (outer.aborted) return outer.reason as Error;
    // Removed once this one has ended, however it ends.
    outer.addEventListener('abort', () => controller.abort(outer.reason), { once: true, signal: controller.signal });
    return undefined;
  }

  /** Whether it has fired (or ended): a call started now would only be aborted. */
  get passed(): boolean {
    return this.signal.aborted;
  }

  /** Ends it now: what still runs for it fails with `reason`. */
  end(reason: Error): void {
    clearTimeout(this.timer);
    this.controller?.abort(reason);
  }

  /** Stops the timer and cancels what is still running for it (the request is answered). */
  dispose(): void {
    this.end(new Error('the request this AWS call was made for is answered'));
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
