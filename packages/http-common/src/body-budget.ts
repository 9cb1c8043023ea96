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
 */
export class BodyBudget {
  /** What a body without a Content-Length counts: the largest any route reads (app.ts keeps it). */
  largestBody = 0;
  private used = 0;
  /** In arrival order. */
  private readonly waiting = new Set<Waiter>();

  constructor(private readonly opts: BodyBudgetOptions) {}

  /**
   * True when the request may go on now; otherwise `proceed` takes it once its body fits, or the
   * request is refused, or it is dropped when its connection closes.
   */
  admit(request: IncomingMessage, response: ServerResponse, proceed: RequestListener): boolean {
    const bytes = this.counted(request);
    if (bytes === 0) return true;
    if (this.fits(bytes)) {
      this.take(bytes, response);
      return true;
    }
    const waiter: Waiter = {
      bytes,
      proceed: () => {
        response.off('close', gone);
        this.take(bytes, response);
        proceed(request, response);
      },
      timer: setTimeout(() => {
        this.waiting.delete(waiter);
        response.off('close', gone);
        this.opts.refuse(response);
      }, this.opts.waitMs),
    };
    const gone = () => {
      this.waiting.delete(waiter);
      clearTimeout(waiter.timer);
    };
    response.once('close', gone);
    this.waiting.add(waiter);
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

  private take(bytes: number, response: ServerResponse): void {
    this.used += bytes;
    response.once('close', () => this.give(bytes));
  }

  private give(bytes: number): void {
    this.used -= bytes;
    for (const waiter of this.waiting) {
      if (!this.fits(waiter.bytes)) continue;
      this.waiting.delete(waiter);
      clearTimeout(waiter.timer);
      waiter.proceed();
    }
  }
}
