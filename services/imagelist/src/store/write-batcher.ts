interface Pending<T, R> {
  item: T;
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
 */
export class WriteBatcher<T, R> {
  private queue: Pending<T, R>[] = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(
    private readonly write: (items: T[]) => Promise<R[]>,
    private readonly keyOf: (item: T) => string,
    private readonly opts: { maxBatch: number; maxInFlight: number },
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
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
    for (const p of this.queue) {
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
      const results = await this.write(batch.map((p) => p.item));
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      this.inFlight--;
      this.schedule();
    }
  }
}
