import { monotonicNow } from './database-clock.js';

interface Pending<T, R> {
  item: T;
  /** When its caller is answered whatever became of it (monotonicNow ms), with a deadline. */
  until: number | undefined;
  resolve(result: R): void;
  reject(error: unknown): void;
}

/**
 * Groups writes that arrive together into one database statement, so they share one commit:
 * PostgreSQL serialises the commits of transactions that NOTIFY, so one commit per PUT caps
 * writes at one per fsync. Each caller still gets its own row back only after the batch
 * committed, or the batch's error. Writes to the same key never share a batch (a statement may
 * change a row once), and at most `maxInFlight` batches run at once; what arrives meanwhile
 * waits and forms the next, larger batch.
 *
 * With `deadline`, each write is answered within `deadline.ms` of its arrival, however long it
 * waited for its turn: one still queued then is rejected and never sent, one in flight is rejected
 * while its statement goes on (see ImageSql.upsert). Bounded per statement only, a write queued
 * behind four batches held by a hung database waited a deadline per batch ahead of it: of 40 PUTs
 * of one image (never in one batch), the last waited ten deadlines, past the shutdown grace.
 */
export class WriteBatcher<T, R> {
  private queue: Pending<T, R>[] = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(
    /** Writes a batch; `until` is when the first of its callers is answered, written or not. */
    private readonly write: (items: T[], until: number | undefined) => Promise<R[]>,
    private readonly keyOf: (item: T) => string,
    private readonly opts: { maxBatch: number; maxInFlight: number; deadline?: { ms: number; missed: () => Error } },
  ) {}

  add(item: T): Promise<R> {
    const { deadline } = this.opts;
    let pending!: Pending<T, R>;
    const written = new Promise<R>((resolve, reject) => {
      pending = { item, until: deadline && monotonicNow() + deadline.ms, resolve, reject };
      this.queue.push(pending);
      this.schedule();
    });
    if (!deadline) return written;
    let timer: NodeJS.Timeout | undefined;
    const missed = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const at = this.queue.indexOf(pending);
        if (at >= 0) this.queue.splice(at, 1); // still waiting for its turn: never sent
        reject(deadline.missed());
      }, deadline.ms);
    });
    return Promise.race([written, missed]).finally(() => clearTimeout(timer));
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.opts.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.inFlight >= this.opts.maxInFlight) return;
    const batch: Pending<T, R>[] = [];
    const keys = new Set<string>();
    const rest: Pending<T, R>[] = [];
    const { deadline } = this.opts;
    const now = monotonicNow();
    for (const p of this.queue) {
      // A batch carries the deadline of its earliest writer (ImageSql.write): one with less than a
      // quarter of its own left would have the database refuse the writes beside it, which had
      // time. It is answered now, never sent.
      if (deadline && p.until! - now < deadline.ms / 4) {
        p.reject(deadline.missed());
        continue;
      }
      const key = this.keyOf(p.item);
      if (batch.length < this.opts.maxBatch && !keys.has(key)) {
        keys.add(key);
        batch.push(p);
      } else {
        rest.push(p);
      }
    }
    this.queue = rest;
    if (batch.length === 0) return;
    this.inFlight++;
    this.schedule();
    try {
      const until = deadline && Math.min(...batch.map((p) => p.until!));
      const results = await this.write(
        batch.map((p) => p.item),
        until,
      );
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      this.inFlight--;
      this.schedule();
    }
  }
}
