/**
 * Remembered results, forgotten all at once when `max` are held: a bound on memory for the hot
 * path's caches, at the price of a Map lookup (an LRU's bookkeeping on every hit cost more than the
 * lookup, measured on admission reviews). What is hot is remembered again at its next use.
 */
export class Memo<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly max: number) {}

  get(key: K): V | undefined {
    return this.entries.get(key);
  }

  set(key: K, value: V): void {
    if (this.entries.size >= this.max && !this.entries.has(key)) this.entries.clear();
    this.entries.set(key, value);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
