/**
 * One holder at a time per key, in arrival order: the changes (create, update, delete) of one
 * repository made by this process run one after the other. A key is forgotten once nobody holds
 * or waits for it, so the map holds only repositories being changed right now.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  /**
   * `fn` once every earlier holder of `key` is done. `wait` may give up waiting (the request's
   * deadline, by rejecting): `fn` is then not run, and the turn passes on to the next waiter.
   */
  async run<T>(key: string, fn: () => Promise<T>, wait: (turn: Promise<void>) => Promise<void> = (turn) => turn): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    // Never rejects: a later waiter waits for `previous` and this holder both, whatever became of them.
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    try {
      await wait(previous);
      return await fn();
    } finally {
      release();
    }
  }

  /** Keys held or waited for (tests: the map does not grow). */
  get size(): number {
    return this.tails.size;
  }
}
