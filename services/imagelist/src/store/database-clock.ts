/**
 * How far the clock may have drifted from a sample per millisecond since it: 1 ms a second, twice
 * the most NTP slews a clock (500 ppm), so a sample seconds old still bounds the offset.
 */
const DRIFT_PER_MS = 0.001;

/**
 * A sample older than this is read again before a write (ImageSql.writeDeadline): its drift
 * allowance grows 1 ms a second, and the embedded database has no heartbeat to renew it, so
 * within half an hour of one read every deadline would have fallen before the write was sent.
 */
const FRESH_MS = 5000;

/**
 * This process's own time for deadlines: the wall clock at its start plus a monotonic clock since,
 * so that a step of the wall clock (NTP, an operator) moves no deadline. Stepped back 2-300 s,
 * `Date.now()` refused every write for as long; stepped forward during a stall, the deadline the
 * database checked moved past the answer.
 */
export const monotonicNow = (): number => performance.timeOrigin + performance.now();

/**
 * This process's estimate of the database server's clock, from round trips that read it (the
 * change feed's heartbeat, every 200 ms): offset = the server's time minus the middle of the
 * round trip, known to within half the round trip. The tightest sample is kept, as long as its
 * error, grown by the drift since, is below a new sample's.
 */
export class DatabaseClock {
  private offsetMs: number | undefined;
  private errorMs = Infinity;
  private sampledAt = 0;

  /** Known, from a sample less than FRESH_MS old. */
  fresh(now = monotonicNow()): boolean {
    return this.offsetMs !== undefined && now - this.sampledAt < FRESH_MS;
  }

  /** Runs a round trip whose row reads the server's clock as `serverMs` (image-sql.ts SERVER_MS), and takes it as a sample. */
  async read(roundTrip: () => Promise<readonly { serverMs: number }[]>): Promise<void> {
    const sentAt = monotonicNow();
    const [row] = await roundTrip();
    if (row) this.sample(sentAt, row.serverMs, monotonicNow());
  }

  /** A round trip sent at `sentAt` and answered at `receivedAt` (monotonicNow ms) that read the server's clock as `serverMs`. */
  sample(sentAt: number, serverMs: number, receivedAt: number): void {
    if (!Number.isFinite(serverMs) || receivedAt < sentAt) return;
    const error = (receivedAt - sentAt) / 2;
    if (this.offsetMs !== undefined && error > this.errorMs + (receivedAt - this.sampledAt) * DRIFT_PER_MS) return;
    this.offsetMs = serverMs - (sentAt + receivedAt) / 2;
    this.errorMs = error;
    this.sampledAt = receivedAt;
  }

  /**
   * The earliest the server's clock can read when this clock reads `localMs`; undefined before the
   * first sample. A deadline the server checks against this has surely passed there by `localMs` here.
   */
  earliest(localMs: number, now = monotonicNow()): number | undefined {
    if (this.offsetMs === undefined) return undefined;
    return localMs + this.offsetMs - this.errorMs - Math.abs(now - this.sampledAt) * DRIFT_PER_MS;
  }
}
