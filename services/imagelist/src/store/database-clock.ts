/**
 * How far the clock may have drifted from a sample per millisecond since it: 1 ms a second, twice
 * the most NTP slews a clock (500 ppm), so a sample seconds old still bounds the offset.
 */
const DRIFT_PER_MS = 0.001;

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

  get known(): boolean {
    return this.offsetMs !== undefined;
  }

  /** A round trip sent at `sentAt` and answered at `receivedAt` (local ms) that read the server's clock as `serverMs`. */
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
  earliest(localMs: number, now = Date.now()): number | undefined {
    if (this.offsetMs === undefined) return undefined;
    return localMs + this.offsetMs - this.errorMs - Math.abs(now - this.sampledAt) * DRIFT_PER_MS;
  }
}
