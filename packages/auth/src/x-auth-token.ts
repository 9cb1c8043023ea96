import { HttpProblem, unavailable } from '@platform/http-common';
import type { FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import { BcryptWorker } from './bcrypt-worker.js';

/** `$2a$`, `$2b$` or `$2y$`, a two-digit cost, 53 characters of salt and hash. */
const BCRYPT = /^\$2[aby]\$(\d{2})\$[./A-Za-z0-9]{53}$/;

export interface XAuthTokenOptions {
  /**
   * Highest bcrypt cost accepted (default 12, about 0.25 s of one core here; Go's default cost,
   * which the original's clients use, is 10). Each step doubles the work a forged token costs.
   */
  maxCost?: number;
  /** How many distinct hashes to remember as verified (default 1024). */
  cacheSize?: number;
  /** How many distinct hashes to remember as failed (default 10,000, about 1.5 MB). */
  rejectedCacheSize?: number;
  /**
   * Verifications running or waiting at once (default 2); a token arriving beyond that is refused
   * at once, without bcrypt. Forged tokens cost an attacker nothing to make, so this, not the
   * caches, is what bounds the CPU they can take.
   */
  maxInFlight?: number;
  /**
   * How long a request waits for its token's comparison (default 5 s). The worker runs at nice 19,
   * so a process whose CPU is busy can leave it waiting for as long as the CPU stays busy; past
   * this, the token is refused unverified (503, retry) while the comparison goes on, and the retry
   * finds its result remembered.
   */
  maxWaitMs?: number;
}

/**
 * What a check of a token found: `valid`, `invalid` (a verified mismatch, or not a token at all),
 * or `unverified` (refused without an answer: bcrypt was busy or too slow, or its worker was lost), which a
 * retry may pass.
 */
export type XAuthTokenCheck = 'valid' | 'invalid' | 'unverified';

/** Counters of what the verifier did (tests, and a metric if a service wants one). */
export interface XAuthTokenStats {
  /** bcrypt comparisons computed. */
  computed: number;
  /** Tokens refused without bcrypt because `maxInFlight` comparisons were already under way. */
  refusedBusy: number;
  /** Tokens refused unverified because their comparison took longer than `maxWaitMs`. */
  refusedLate: number;
}

/**
 * Verifies `X-Auth-Token` as the original ecr-api does: the client sends a bcrypt hash of the
 * shared key, and the service checks the key against it. bcrypt is slow on purpose, so its work
 * is bounded: hashes that verified and hashes that failed are remembered (LRU), costs above
 * `maxCost` are refused unread, at most `maxInFlight` comparisons run or wait (on a worker thread,
 * off the event loop) and any more are refused at once, and concurrent requests with the same new
 * hash share one comparison. A client with a verified hash never waits for bcrypt again, whatever
 * forged tokens arrive meanwhile.
 */
export class XAuthTokenVerifier {
  private readonly good: LRUCache<string, true>;
  private readonly bad: LRUCache<string, true>;
  private readonly inFlight = new Map<string, Promise<XAuthTokenCheck>>();
  private readonly worker: BcryptWorker;
  private readonly maxCost: number;
  private readonly maxInFlight: number;
  private readonly maxWaitMs: number;
  private readonly counts: XAuthTokenStats = { computed: 0, refusedBusy: 0, refusedLate: 0 };

  constructor(sharedKey: string, opts: XAuthTokenOptions = {}) {
    if (!sharedKey) throw new Error('X-Auth-Token verification needs a non-empty shared key');
    this.maxCost = opts.maxCost ?? 12;
    this.maxInFlight = opts.maxInFlight ?? 2;
    this.maxWaitMs = opts.maxWaitMs ?? 5000;
    this.good = new LRUCache({ max: opts.cacheSize ?? 1024 });
    this.bad = new LRUCache({ max: opts.rejectedCacheSize ?? 10_000 });
    this.worker = new BcryptWorker(sharedKey);
  }

  get stats(): Readonly<XAuthTokenStats> {
    return { ...this.counts };
  }

  async verify(header: string | undefined): Promise<boolean> {
    return (await this.check(header)) === 'valid';
  }

  async check(header: string | undefined): Promise<XAuthTokenCheck> {
    if (!header) return 'invalid';
    if (this.good.get(header)) return 'valid';
    if (this.bad.get(header)) return 'invalid';
    const match = BCRYPT.exec(header);
    if (!match || Number(match[1]) > this.maxCost || Number(match[1]) < 4) return 'invalid';
    const shared = this.inFlight.get(header);
    if (shared) return this.waitAtMost(shared);
    if (this.inFlight.size >= this.maxInFlight) {
      this.counts.refusedBusy++;
      return 'unverified';
    }
    this.counts.computed++;
    const verifying = this.worker.compare(header).then(
      (ok): XAuthTokenCheck => {
        (ok ? this.good : this.bad).set(header, true);
        return ok ? 'valid' : 'invalid';
      },
      (): XAuthTokenCheck => 'unverified', // the worker was lost: refuse this once, remember nothing
    );
    this.inFlight.set(header, verifying);
    // Counted in flight until the worker has answered, however long a request waits for it.
    void verifying.finally(() => this.inFlight.delete(header));
    return this.waitAtMost(verifying);
  }

  private async waitAtMost(verifying: Promise<XAuthTokenCheck>): Promise<XAuthTokenCheck> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<XAuthTokenCheck>((resolve) => {
      timer = setTimeout(() => {
        this.counts.refusedLate++;
        resolve('unverified');
      }, this.maxWaitMs);
    });
    try {
      return await Promise.race([verifying, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops the worker thread (app shutdown). */
  close(): Promise<void> {
    return this.worker.close();
  }

  /**
   * An onRequest hook answering 403 (as the original does) without a valid token, and 503 with
   * Retry-After when the token could not be verified (bcrypt busy): a valid token refused under a
   * flood of forged ones must look like a moment's unavailability, not like a wrong key.
   */
  hook() {
    return async (request: FastifyRequest): Promise<void> => {
      const header = request.headers['x-auth-token'];
      const found = await this.check(Array.isArray(header) ? header[0] : header);
      if (found === 'unverified') throw unavailable('The X-Auth-Token could not be verified now; retry the request.');
      if (found === 'invalid') throw new HttpProblem(403, 'A valid X-Auth-Token is required.');
    };
  }
}
