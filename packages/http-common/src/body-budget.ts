import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';

export interface BodyBudgetOptions {
  /** Bytes of request bodies read and worked on at once, at most; one body goes alone whatever its size. */
  bytes: number;
  /** A body whose Content-Length is at most this is not counted. */
  freeBytes: number;
  /** How long a body waits for room before `refuse` answers it. */
  waitMs: number;
  /** Answers a request whose body found no room within waitMs. */
  refuse: (response: ServerResponse) => void;
  /**
   * While bodies wait, a body being read keeps its room only if it arrives at least this fast:
   * after t seconds it has sent `bytesPerSecond * t - graceBytes` bytes.
   */
  minRate: { bytesPerSecond: number; graceBytes: number };
  /** Ends a request whose body arrives slower than minRate while others wait (its room is given back when its response closes). */
  tooSlow: (request: IncomingMessage) => void;
}

/** How often the bodies being read are checked against minRate while bodies wait. */
const CHECK_MS = 100;
/**
 * The most time one check counts. A loop blocked by other work (a large body parsed) reads no
 * socket, and timers run before the reads it then catches up on: without a cap, a body whose bytes
 * wait in the kernel would be ended for the server's own stall.
 */
const MAX_STEP_MS = 2 * CHECK_MS;

/**
 * A counted body being read, measured while bodies wait as a leaky bucket: it owes minRate's bytes
 * for the time passed and pays with the bytes that arrived; ahead by graceBytes at most, ended once
 * it owes any.
 */
interface Reading {
  readonly request: IncomingMessage;
  /** Its socket's bytes read at the last check. */
  bytesRead: number;
  /** When it was last checked; undefined while no body waits. */
  checkedAt: number | undefined;
  owed: number;
}

interface Waiter {
  readonly bytes: number;
  readonly proceed: () => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Bounds the memory that request bodies take at once. A body costs about three times its size
 * while it is worked on (the bytes read, their string, the parsed object), and nothing else bounds
 * how many are read at once: 30 admission reviews of 7 MB sent together took imagelist to 660 MB
 * resident, past the Deployment's 384 MiB limit.
 *
 * A request whose body is counted (its Content-Length, or for a chunked body the largest body a
 * route takes) goes on when the body fits in what the bodies in flight leave; otherwise it waits,
 * unread, so Node stops reading its socket once a few KB are buffered. The first waiter that fits
 * goes when a counted body's response closes. One that waits `waitMs` is refused (a 503 its client
 * may retry), and one whose connection closes leaves the queue (a client that leaves is seen only
 * when its request is read or refused: Node does not read a waiting request's socket). Small
 * bodies are not counted: at most `freeBytes` each, they cost about what their connection costs,
 * and they never wait behind large ones.
 *
 * A body takes its room by its Content-Length, before it arrives, so two clients that declare 8 MiB
 * and send a byte a second would hold the room until the request timeout, and reconnect: every
 * large admission review refused, for the price of two idle connections. So while bodies wait, a
 * body being read must keep arriving at `minRate` (an API server on the cluster's network sends a
 * review at tens of MB/s), or its request is ended and its room goes to the waiters. Holding the
 * room then costs a client the bandwidth of sending it.
 */
export class BodyBudget {
  /** What a body without a Content-Length counts: the largest any route reads (app.ts keeps it). */
  largestBody = 0;
  private used = 0;
  /** In arrival order. */
  private readonly waiting = new Set<Waiter>();
  private readonly reading = new Set<Reading>();
  /** Runs while requests wait. */
  private checker: NodeJS.Timeout | undefined;

  constructor(private readonly opts: BodyBudgetOptions) {}

  /**
   * True when the request may go on now; otherwise `proceed` takes it once its body fits, or the
   * request is refused, or it is dropped when its connection closes.
   */
  admit(request: IncomingMessage, response: ServerResponse, proceed: RequestListener): boolean {
    const bytes = this.counted(request);
    if (bytes === 0) return true;
    if (this.fits(bytes)) {
      this.take(bytes, request, response);
      return true;
    }
    const waiter: Waiter = {
      bytes,
      proceed: () => {
        response.off('close', gone);
        this.take(bytes, request, response);
        proceed(request, response);
      },
      timer: setTimeout(() => {
        this.unqueue(waiter);
        response.off('close', gone);
        this.opts.refuse(response);
      }, this.opts.waitMs),
    };
    const gone = () => {
      this.unqueue(waiter);
      clearTimeout(waiter.timer);
    };
    response.once('close', gone);
    this.waiting.add(waiter);
    this.checker ??= setInterval(() => this.endTooSlow(), CHECK_MS).unref();
    this.endTooSlow();
    return false;
  }

  private counted(request: IncomingMessage): number {
    const length = request.headers['content-length'];
    if (length !== undefined) {
      const bytes = Number(length);
      // A body over the largest limit is refused (413) before it is read.
      return bytes > this.opts.freeBytes && bytes <= this.largestBody ? bytes : 0;
    }
    return request.headers['transfer-encoding'] === undefined ? 0 : this.largestBody;
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.opts.bytes;
  }

  private take(bytes: number, request: IncomingMessage, response: ServerResponse): void {
    this.used += bytes;
    const reading: Reading = { request, bytesRead: 0, checkedAt: undefined, owed: 0 };
    this.reading.add(reading);
    response.once('close', () => {
      this.reading.delete(reading);
      this.give(bytes);
    });
  }

  private give(bytes: number): void {
    this.used -= bytes;
    for (const waiter of this.waiting) {
      if (!this.fits(waiter.bytes)) continue;
      this.unqueue(waiter);
      clearTimeout(waiter.timer);
      waiter.proceed();
    }
  }

  private unqueue(waiter: Waiter): void {
    this.waiting.delete(waiter);
    if (this.waiting.size > 0) return;
    clearInterval(this.checker);
    this.checker = undefined;
    for (const reading of this.reading) reading.checkedAt = undefined;
  }

  /** Ends the requests whose bodies arrive slower than minRate (only while others wait for room). */
  private endTooSlow(): void {
    const now = performance.now();
    const { bytesPerSecond, graceBytes } = this.opts.minRate;
    for (const reading of this.reading) {
      const { request } = reading;
      if (request.complete) {
        this.reading.delete(reading);
        continue;
      }
      const bytesRead = request.socket.bytesRead;
      if (reading.checkedAt === undefined) reading.owed = -graceBytes;
      else {
        const seconds = Math.min(now - reading.checkedAt, MAX_STEP_MS) / 1000;
        reading.owed = Math.max(reading.owed + seconds * bytesPerSecond - (bytesRead - reading.bytesRead), -graceBytes);
      }
      reading.bytesRead = bytesRead;
      reading.checkedAt = now;
      if (reading.owed > 0) {
        this.reading.delete(reading);
        this.opts.tooSlow(request);
      }
    }
  }
}
