import { randomUUID } from 'node:crypto';
import postgres, { type Sql } from 'postgres';
import type { Allowlist } from '../admission/policy.js';
import { normalizeName, type ImageReference } from '../reference.js';
import { SORT_KEYS, type Image, type SortKey } from '../schemas/image.js';
import { IMAGE_COLUMNS } from './images.js';
import { sortWire, toWire, wireHasTag, wireName, type WireImage } from './wire-image.js';

export const CHANNEL = 'images_changed';

export interface IndexLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ImageIndexOptions {
  /** How often each replica proves its listener alive by a NOTIFY of its own. */
  heartbeatMs?: number;
  /** Without any notification for this long, the index is not trusted. */
  staleAfterMs?: number;
  /** Memory for rendered name lookups (bytes); 0 turns the cache off. */
  answerCacheBytes?: number;
  log?: IndexLogger;
}

/**
 * The whole allowlist in memory, kept exact across replicas by PostgreSQL LISTEN/NOTIFY:
 * a trigger announces every changed id, and each replica re-reads those rows. While the listener
 * is down, reconnecting, reloading, or silent for longer than `staleAfterMs` (it hears its own
 * heartbeat NOTIFY every `heartbeatMs`), `fresh` is false and callers go to the database instead.
 */
export class ImageIndex {
  private rows = new Map<string, WireImage>();
  private byNormalizedName = new Map<string, Set<string>>();
  /**
   * Rendered `GET /images?name=` answers, by sort and name; dropped when the name changes. Kept
   * as the bytes that go out, so a repeated answer (~11 KB for 50 images) is not re-encoded.
   */
  private answers = new Map<string, Buffer>();
  /** Bumped by every change, so caches of answers derived from the index know they are old. */
  generation = 0;
  private answerBytes = 0;
  private readonly answerBudget: number;

  private listener: Sql | undefined;
  private listening = false;
  private loaded = false;
  private lastHeard = 0;
  private pending = new Set<string>();
  private reloadAll = false;
  private draining: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly nonce = randomUUID();
  private readonly heartbeatMs: number;
  private readonly staleAfterMs: number;
  private readonly log: IndexLogger | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly url: string,
    opts: ImageIndexOptions = {},
  ) {
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.answerBudget = opts.answerCacheBytes ?? 16 * 1024 * 1024;
    this.staleAfterMs = opts.staleAfterMs ?? 3 * this.heartbeatMs;
    this.log = opts.log;
  }

  /** True when answers from memory are exact. */
  get fresh(): boolean {
    return this.listening && this.loaded && Date.now() - this.lastHeard < this.staleAfterMs;
  }

  get size(): number {
    return this.rows.size;
  }

  /** Starts listening (retrying in the background while the database is away). */
  start(): this {
    const options = {
      max: 1,
      max_lifetime: null,
      fetch_types: false,
      connect_timeout: 5,
      onnotice: () => {},
      onclose: () => this.onListenerClosed(),
      // postgres.js calls this for every notification on the connection (not in its typings)
      onnotify: (_channel: string, payload: string) => this.onNotify(payload),
    };
    this.listener = postgres(this.url, options as postgres.Options<Record<string, never>>);
    void this.listen();
    this.heartbeat = setInterval(() => {
      this.sql.notify(CHANNEL, `heartbeat:${this.nonce}`).catch(() => {});
    }, this.heartbeatMs);
    this.heartbeat.unref();
    return this;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeat);
    await this.listener?.end({ timeout: 1 });
    await this.draining;
  }

  /** Resolves once the index is loaded and listening (for tests and start-up). */
  async ready(timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.fresh) {
      if (Date.now() > end) throw new Error('image index did not become ready');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private async listen(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.listener!`LISTEN images_changed`;
        this.listening = true;
        this.lastHeard = Date.now();
        this.reloadAll = true;
        this.drain();
        if (attempt > 0) this.log?.info({ attempt }, 'image index listener reconnected');
        return;
      } catch (err) {
        if (attempt === 0) this.log?.warn({ code: (err as { code?: string }).code }, 'image index listener cannot connect; lookups use the database');
        await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** attempt, 5000)));
      }
    }
  }

  private onListenerClosed(): void {
    if (this.closed) return;
    this.listening = false;
    this.loaded = false;
    this.log?.warn({}, 'image index listener lost; lookups use the database until it is back');
    void this.listen();
  }

  private onNotify(payload: string): void {
    this.lastHeard = Date.now();
    if (payload.startsWith('heartbeat:')) return;
    if (payload === '*') this.reloadAll = true;
    else this.pending.add(payload);
    this.drain();
  }

  /** Applies what changed, one batch at a time, so a later read never loses to an earlier one. */
  private drain(): void {
    if (this.draining) return;
    this.draining = (async () => {
      while (!this.closed && (this.reloadAll || this.pending.size)) {
        try {
          if (this.reloadAll) {
            this.reloadAll = false;
            this.pending.clear();
            this.loaded = false;
            await this.loadAll();
            this.loaded = true;
          } else {
            const ids = [...this.pending];
            this.pending.clear();
            const rows = await this.sql<Image[]>`SELECT ${this.sql.unsafe(IMAGE_COLUMNS)} FROM images WHERE id = ANY(${ids}::text[])`;
            const found = new Map(rows.map((r) => [r.id, r]));
            for (const id of ids) {
              const row = found.get(id);
              if (row) this.put(row);
              else this.remove(id);
            }
          }
        } catch (err) {
          // The database is away: distrust the index until a full reload succeeds.
          this.loaded = false;
          this.reloadAll = true;
          this.log?.warn({ code: (err as { code?: string }).code }, 'image index refresh failed; retrying');
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    })().finally(() => {
      this.draining = undefined;
      if (!this.closed && (this.reloadAll || this.pending.size)) this.drain();
    });
  }

  private async loadAll(): Promise<void> {
    const started = Date.now();
    const live = { rows: this.rows, byNormalizedName: this.byNormalizedName };
    // Rebuilt from scratch; lookups meanwhile go to the database (not fresh).
    this.rows = new Map();
    this.byNormalizedName = new Map();
    this.answers = new Map();
    this.answerBytes = 0;
    this.generation++;
    try {
      await this.sql<Image[]>`SELECT ${this.sql.unsafe(IMAGE_COLUMNS)} FROM images`.cursor(2000, (batch) => {
        for (const row of batch) this.put(row);
      });
    } catch (err) {
      Object.assign(this, live);
      throw err;
    }
    this.log?.info({ images: this.rows.size, ms: Date.now() - started }, 'image index loaded');
  }

  /** Records a row this replica just wrote, before its notification comes back. */
  put(row: Image): void {
    const old = this.rows.get(row.id);
    if (old !== undefined && wireName(old) !== row.name) this.unlink(row.id, old);
    this.rows.set(row.id, toWire(row));
    this.generation++;
    this.forgetAnswers(row.name);
    link(this.byNormalizedName, normalizeName(row.name), row.id);
  }

  remove(id: string): void {
    const old = this.rows.get(id);
    if (!old) return;
    this.rows.delete(id);
    this.generation++;
    this.unlink(id, old);
  }

  private unlink(id: string, old: WireImage): void {
    const name = wireName(old);
    unlink(this.byNormalizedName, normalizeName(name), id);
    this.forgetAnswers(name);
  }

  private forgetAnswers(name: string): void {
    if (this.answers.size === 0) return;
    for (const sort of SORT_KEYS) {
      const key = `${sort} ${name}`;
      const answer = this.answers.get(key);
      if (answer === undefined) continue;
      this.answers.delete(key);
      this.answerBytes -= answer.length;
    }
  }

  /** `GET /images?name=` from memory: the JSON array, rendered once per change of the name. */
  namedJson(name: string, sort: SortKey): Buffer {
    const key = `${sort} ${name}`;
    const cached = this.answers.get(key);
    if (cached !== undefined) return cached;
    const answer = Buffer.from(`[${this.named(name, sort).join(',')}]`);
    if (answer.length <= this.answerBudget / 16) {
      this.answers.set(key, answer);
      this.answerBytes += answer.length;
      // oldest first out (Map keeps insertion order)
      for (const [k, v] of this.answers) {
        if (this.answerBytes <= this.answerBudget) break;
        this.answers.delete(k);
        this.answerBytes -= v.length;
      }
    }
    return answer;
  }

  get(id: string): { json: WireImage; name: string } | undefined {
    const json = this.rows.get(id);
    return json === undefined ? undefined : { json, name: wireName(json) };
  }

  /** Images of exactly this name, in the order of `sort`. */
  named(name: string, sort: SortKey): WireImage[] {
    const ids = this.byNormalizedName.get(normalizeName(name));
    if (!ids) return [];
    const found: WireImage[] = [];
    for (const id of ids) {
      const json = this.rows.get(id)!;
      if (wireName(json) === name) found.push(json);
    }
    return sortWire(found, sort);
  }

  allowsFromMemory(ref: ImageReference): boolean {
    if (ref.digest) return this.rows.has(ref.digest);
    const ids = this.byNormalizedName.get(ref.name);
    if (!ids) return false;
    for (const id of ids) if (wireHasTag(this.rows.get(id)!, ref.tag!)) return true;
    return false;
  }
}

function link(map: Map<string, Set<string>>, key: string, id: string): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(id);
}

function unlink(map: Map<string, Set<string>>, key: string, id: string): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(id);
  if (set.size === 0) map.delete(key);
}

const VERDICT_CACHE_SIZE = 10_000;

/**
 * Admission lookups from the index while it is fresh, from the database otherwise. Verdicts are
 * remembered until the index changes at all (its generation), since every pod of a rollout asks
 * about the same images.
 */
export class IndexedAllowlist implements Allowlist {
  /** By parsed reference: the policy hands over the same object for the same image string. */
  private verdicts = new Map<ImageReference, boolean>();
  private generation = -1;

  constructor(
    private readonly index: ImageIndex,
    private readonly fallback: Allowlist,
  ) {}

  /** A boolean from memory while the index is fresh; the database's promise otherwise. */
  allows(ref: ImageReference): boolean | Promise<boolean> {
    if (!this.index.fresh) return this.fallback.allows(ref);
    if (this.generation !== this.index.generation || this.verdicts.size >= VERDICT_CACHE_SIZE) {
      this.verdicts.clear();
      this.generation = this.index.generation;
    }
    let verdict = this.verdicts.get(ref);
    if (verdict === undefined) {
      verdict = this.index.allowsFromMemory(ref);
      this.verdicts.set(ref, verdict);
    }
    return verdict;
  }
}
