import { isDatabaseUnavailable } from './errors.js';
import type { ImageSql } from './image-sql.js';

/**
 * The longest a readiness probe waits for its lookup: the kubelet gives up after 2 s
 * (timeoutSeconds, deploy/imagelist/base/deployment.yaml), and a probe it gave up on records a
 * timeout instead of our reason.
 */
const PROBE_WAIT_MS = 1500;

/** Why the database cannot answer admission now, for a 503. */
export interface Refusal {
  reason: string;
  cause?: unknown;
}

/**
 * Whether the database answers an allowlist lookup in time: /health/ready's check while admission
 * is answered from the database. `SELECT 1` answers while the images table is locked (VACUUM FULL,
 * a migration's rewrite, a long ALTER TABLE), when every review waits out --db-timeout for a 503.
 *
 * One lookup at a time, until the server has answered it (its statement_timeout ends it), however
 * late: probes meanwhile share its verdict, so a locked table never piles lookups up. A late or
 * failed lookup is not an outage: it is not reported to the live index (live-index.ts).
 */
export class LookupProbe {
  private current: Promise<Refusal | undefined> | undefined;
  private readonly waitMs: number;

  constructor(
    private readonly images: ImageSql,
    deadlineMs: number,
  ) {
    this.waitMs = Math.min(deadlineMs, PROBE_WAIT_MS);
  }

  /** Undefined when the database answered a lookup within the deadline, else why not. */
  check(): Promise<Refusal | undefined> {
    this.current ??= this.lookup();
    return this.current;
  }

  private lookup(): Promise<Refusal | undefined> {
    const answered = this.images.lookupNothing();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<Refusal>((resolve) => {
      timer = setTimeout(
        () =>
          resolve({
            reason: `The database did not answer an allowlist lookup within ${this.waitMs} ms (the images table locked by VACUUM FULL, a migration or ALTER TABLE, or the database slow); admission reviews would fail.`,
          }),
        this.waitMs,
      );
    });
    const verdict = Promise.race([answered.then(() => undefined, refusal), late]).finally(() => clearTimeout(timer));
    void answered
      .catch(() => undefined)
      .finally(() => {
        if (this.current === verdict) this.current = undefined;
      });
    return verdict;
  }
}

function refusal(err: unknown): Refusal {
  if (isDatabaseUnavailable(err)) return { reason: 'The database is unavailable.', cause: err };
  const code = (err as { code?: unknown } | null)?.code;
  return { reason: `The database failed an allowlist lookup${typeof code === 'string' ? ` (${code})` : ''}.`, cause: err };
}
