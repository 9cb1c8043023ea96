import { unavailable } from '@platform/http-common';
import { setTimeout as sleep } from 'node:timers/promises';
import { getHeapStatistics } from 'node:v8';
import { ChangeFeed, type ChangeFeedListener, type ChangeFeedOptions, type FeedLogger } from './change-feed.js';
import type { DatabaseTarget } from './database-tls.js';
import { isDatabaseUnavailable } from './errors.js';
import { ImageIndex, type ImageRecord, type IndexRow } from './image-index.js';
import type { ImageSql } from './image-sql.js';
import type { DatabaseClock } from './database-clock.js';
import { LocalWrites } from './local-writes.js';

export interface LiveIndexOptions {
  /**
   * While the database is unreachable, answer from the last exact state for this long after it
   * was last known exact; 0 answers 503 at once, as a strict fail-closed gate.
   */
  outageGraceMs: number;
  /** Without a heartbeat heard for this long, answers come from the database instead of memory. */
  staleAfterMs?: number;
  /** Rows per query when (re)loading the whole index. */
  loadPageSize?: number;
  /**
   * The most images this replica holds in memory; a larger allowlist is answered from the
   * database instead of exhausting the heap (every replica would crash-loop, and a fail-closed
   * webhook would stop the cluster).
   */
  maxImages?: number;
  /**
   * The most memory the index may take, as ImageIndex.memory() estimates it: `heap` for its names
   * (within the JavaScript heap's limit), `total` for all of it (within the container's memory
   * limit); and `rss`, the process's resident memory while the index grows, which also counts the
   * garbage of a load. Past any, this replica answers from the database, as past `maxImages`: what
   * an image costs depends on its name and tags, so a count alone cannot keep the index within
   * the process (1,000,000 images of distinct names exhausted a 256 MB heap).
   */
  maxMemory?: MemoryBudget;
  /**
   * While over `maxImages`, a change to the allowlist makes the replica count it again, at most
   * this often (default 5 minutes; a change within that is counted when it ends), so it loads its
   * index by itself once deletes make it fit.
   */
  overLimitRecheckMs?: number;
  answerCacheBytes?: number;
  /**
   * Changes waiting to be read back beyond which the next one makes the replica reload the whole
   * index instead (default 10 pages): a bulk insert or delete announces every row.
   */
  bulkChanges?: number;
  feed?: Omit<ChangeFeedOptions, 'log'>;
  log?: FeedLogger & { error(obj: object, msg: string): void };
}

/**
 * Of the JavaScript heap's limit, what the index's names may not take: the young generation (up
 * to three semi-spaces of 16 MB, the Deployment's and V8's default) and what the service itself
 * keeps there (~30 MB measured at start).
 */
const HEAP_NOT_FOR_NAMES = 80 * 2 ** 20;
/** Of the rest, what the names may take: a heap much fuller than that spends its time collecting. */
const HEAP_SHARE = 0.6;
/**
 * Of the memory limit (the container's, else the machine's), what the whole index may take. The
 * rest is the process itself: Node and its code, the young generation, the answer cache, the
 * pages of a load and the garbage of requests (~150 MB at the Deployment's settings).
 */
const MEMORY_SHARE = 0.6;
/**
 * Of the memory limit, the resident memory at which a growing index is given up, garbage and all:
 * the estimate leaves out what a load makes and the collector has not yet freed. It counts only
 * once the index itself holds a quarter of the limit, so that the garbage of an index given up
 * (freed only by a later collection) does not stop the next load at its first page.
 */
const RSS_SHARE = 0.85;
const RSS_MIN_INDEX_SHARE = 0.25;

export interface MemoryBudget {
  heap: number;
  total: number;
  rss: number;
  /** The index's own estimate from which `rss` applies. */
  rssFromIndex: number;
}

/** The memory the index may take in a process that may use `memory` bytes (LiveIndexOptions.maxMemory). */
export function indexMemoryBudget(memory: number): MemoryBudget {
  return {
    heap: Math.floor(Math.max(0, getHeapStatistics().heap_size_limit - HEAP_NOT_FOR_NAMES) * HEAP_SHARE),
    total: Math.floor(memory * MEMORY_SHARE),
    rss: Math.floor(memory * RSS_SHARE),
    rssFromIndex: Math.floor(memory * RSS_MIN_INDEX_SHARE),
  };
}

/** Where an answer comes from right now. */
export type Source = 'memory' | 'database' | 'stale' | 'unavailable';

/**
 * The in-memory allowlist kept current: loads the index in pages, applies what the change feed
 * announces, and decides whether an answer may come from memory.
 *
 * - fresh (loaded, listening, a heartbeat heard within `staleAfterMs`): from memory;
 * - the database unreachable: from the last exact state for `outageGraceMs`, then 503;
 * - otherwise (listener reconnecting, index reloading, heartbeat late): from the database.
 */
export class LiveIndex implements ChangeFeedListener {
  index: ImageIndex;
  private readonly feed: ChangeFeed;
  /** Set while the allowlist is larger than `maxImages`: every answer comes from the database. */
  private tooLarge = false;
  /** When a change may next make an over-limit replica count the allowlist again. */
  private recheckAt = 0;
  /** Counts the allowlist again when the recheck interval ends, for a change heard within it. */
  private recheckTimer: NodeJS.Timeout | undefined;
  /** The over-limit error is logged once, not at every recount that still finds it too large. */
  private overLimitLogged = false;
  private loaded = false;
  private everLoaded = false;
  private lastExactAt = 0;
  /** Set when the database was found unreachable, until it is heard from again. */
  private unreachableSince: number | undefined;
  private outageLogged: 'no' | 'stale' | 'closed' = 'no';
  /** Ids announced and not yet read, with when each was (last) heard. */
  private pending = new Map<string, number>();
  /**
   * Ids announced and not yet applied (pending, being read, or covered by a reload that has not
   * finished), with when each was heard. Memory is not exact for them: past `staleAfterMs` answers
   * come from the database, and they are dropped from memory (dropOverdue), so that the outage
   * path cannot admit an image a DELETE we were told of removed.
   */
  private unconfirmed = new Map<string, number>();
  /** When the oldest entry of `unconfirmed` was heard (kept current: `fresh` reads it per request). */
  private unconfirmedSince: number | undefined;
  /**
   * When a change was heard that only a reload of the whole table applies (a TRUNCATE, or a burst
   * of more changes than `bulkChanges`), until a reload that started after it has completed.
   */
  private wholeChangeSince: number | undefined;
  /** When the full reload under way started (undefined: none is). */
  private reloadStartedAt: number | undefined;
  /** The first whole change heard while that reload ran: it may have read the table before it. */
  private wholeChangeDuringReload: number | undefined;
  private overdueTimer: NodeJS.Timeout | undefined;
  private overdueLogged = false;
  private reloadAll = false;
  private draining: Promise<void> | undefined;
  /**
   * Refreshes failed in a row, and the code of the last: a failure is logged when a streak begins
   * or its code changes, and the streak's end once. Logged each time, a table dropped (42P01) or
   * a grant revoked (42501) while the database answers wrote four warnings a second, for good.
   */
  private refreshFailures = 0;
  private refreshFailedWith: string | undefined;
  private closed = false;
  private readonly staleAfterMs: number;
  private readonly pageSize: number;
  private readonly bulkChanges: number;
  private readonly maxImages: number;
  private readonly maxMemory: MemoryBudget;
  private readonly overLimitRecheckMs: number;
  private readonly localWrites = new LocalWrites();

  constructor(
    private readonly sql: ImageSql,
    target: DatabaseTarget,
    private readonly opts: LiveIndexOptions,
  ) {
    this.staleAfterMs = opts.staleAfterMs ?? 600;
    this.pageSize = opts.loadPageSize ?? 5000;
    this.bulkChanges = opts.bulkChanges ?? 10 * this.pageSize;
    this.maxImages = opts.maxImages ?? Number.POSITIVE_INFINITY;
    this.maxMemory = opts.maxMemory ?? { heap: Infinity, total: Infinity, rss: Infinity, rssFromIndex: 0 };
    this.overLimitRecheckMs = opts.overLimitRecheckMs ?? 300_000;
    this.index = new ImageIndex(opts.answerCacheBytes === undefined ? {} : { answerCacheBytes: opts.answerCacheBytes });
    this.feed = new ChangeFeed(target, sql, this, { ...opts.feed, log: opts.log });
  }

  /** The database server's clock as the change feed's heartbeats read it: writes carry their deadline in it. */
  get clock(): DatabaseClock {
    return this.sql.clock;
  }

  start(): this {
    this.feed.start();
    return this;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.overdueTimer);
    clearTimeout(this.recheckTimer);
    await this.feed.close();
    await this.draining;
  }

  /** Resolves once answers come from memory (for start-up and tests). */
  async ready(timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.fresh) {
      if (Date.now() > end) throw new Error('image index did not become ready');
      await sleep(20);
    }
  }

  /** The index's estimated size in bytes: its names, columns and tags (ImageIndex.memory()). */
  get indexBytes(): number {
    const { heap, outside } = this.index.memory();
    return heap + outside;
  }

  /** True while the allowlist does not fit `maxImages` or `maxMemory`: this replica answers from the database. */
  get overLimit(): boolean {
    return this.tooLarge;
  }

  get fresh(): boolean {
    const now = Date.now();
    return (
      !this.tooLarge &&
      this.loaded &&
      this.feed.state === 'listening' &&
      this.feed.announcing &&
      now - this.feed.currentAsOf < this.staleAfterMs &&
      // a change heard but not applied for as long: memory is not what the database holds
      (this.unconfirmedSince === undefined || now - this.unconfirmedSince < this.staleAfterMs) &&
      (this.wholeChangeSince === undefined || now - this.wholeChangeSince < this.staleAfterMs)
    );
  }

  /** When the in-memory state was last known to be exact (ms since the epoch; 0: never). */
  get exactAsOf(): number {
    this.noteExact();
    return this.lastExactAt;
  }

  private noteExact(): void {
    if (!this.loaded || this.feed.state !== 'listening' || !this.feed.announcing) return;
    // Exact up to the oldest change not yet applied (whose ids dropOverdue takes out of memory).
    const asOf = Math.min(this.feed.currentAsOf, this.unappliedSince);
    this.lastExactAt = Math.max(this.lastExactAt, asOf);
  }

  /** False from a failed database call (a heartbeat, a read, a write) until a heartbeat succeeds. */
  get databaseReachable(): boolean {
    return this.unreachableSince === undefined;
  }

  /** True while answers come from the last exact state because the database is unreachable. */
  get servingStale(): boolean {
    return !this.fresh && !this.databaseReachable && this.withinGrace();
  }

  /** True when `read` would answer from memory (unless `outageOnly`), until the process next yields. */
  answersFromMemory(): boolean {
    const source = this.source();
    return source === 'memory' || source === 'stale';
  }

  /** Where an answer should come from now. */
  source(): Source {
    if (this.fresh) return 'memory';
    return this.databaseReachable ? 'database' : this.outage();
  }

  /**
   * An answer from memory when that is exact or the outage allows it, else from the database;
   * a database that turns out unreachable falls back to the last exact state within the grace.
   * `outageOnly`: answers the database serves better (whole-table lists, which memory would
   * sort and render in one go) come from memory only when the database cannot answer.
   */
  read<T>(fromMemory: (index: ImageIndex) => T, fromDatabase: () => Promise<T>, opts: { outageOnly?: boolean } = {}): T | Promise<T> {
    const source = this.source();
    if (source === 'stale' || (source === 'memory' && !opts.outageOnly)) return fromMemory(this.index);
    if (source === 'unavailable') throw unavailable('The database is unreachable and the in-memory allowlist is too old to answer from.');
    return fromDatabase().catch((err: unknown) => {
      if (!isDatabaseUnavailable(err)) throw err;
      this.unreachableSince ??= Date.now();
      if (this.outage() === 'stale') return fromMemory(this.index);
      throw err;
    });
  }

  /**
   * Read-your-writes on this replica, before the notification comes back; and the id is read
   * back once more. The write's answer may reach this replica after another replica's later change
   * to the same image (a retransmitted packet on the pool's connection, while the listener's is on
   * time) was heard and applied: applied last, our own row would then stand in memory for good,
   * as no notification follows (an image deleted since, admitted until the next reload).
   */
  wrote(row: ImageRecord): void {
    const conflicting = this.localWrites.settle(row.id);
    if (this.tooLarge) return;
    // Another write of the image on this replica, overlapping this one, would leave it otherwise:
    // this answer may be the one that lost (a PUT answered after the DELETE that followed it).
    // The image leaves memory, denied rather than admitted as it no longer is, until it is read.
    if (conflicting) this.index.remove(row.id);
    else this.index.put(row);
    this.readBack(row.id);
  }

  /**
   * As `wrote`: gone from memory at once, read back once more (another replica may have written
   * it again since). Also when the DELETE found no row: another replica or a statement deleted the
   * image first, and this replica may not have applied that yet.
   */
  deleted(id: string): void {
    this.localWrites.settle(id);
    this.index.remove(id);
    if (!this.tooLarge) this.readBack(id);
  }

  /** A write of `id` is about to be sent, which would leave it as `outcome` says (LocalWrites). */
  writing(id: string, outcome: string): void {
    this.localWrites.begin(id, outcome);
  }

  /** A write of `id` failed: whatever it did, the change feed says so. */
  writeFailed(id: string): void {
    this.localWrites.settle(id);
  }

  /** Writes need the database: while it is known to be unreachable they fail at once. */
  assertWritable(): void {
    if (!this.databaseReachable) throw unavailable('The database is unreachable; writes are not accepted until it is back.');
  }

  /** A database call failed: if the database is unreachable, reads stop waiting for it. */
  noteFailure(err: unknown): void {
    if (isDatabaseUnavailable(err)) this.unreachableSince ??= Date.now();
  }

  // ChangeFeedListener

  connected(): void {
    this.reloadAll = true;
    this.pending.clear();
    this.drain();
  }

  changed(id: string): void {
    if (this.tooLarge) {
      // Nothing in memory to keep current, but the allowlist may have shrunk to fit: counted again
      // at most every overLimitRecheckMs, and a change within that is counted when it ends (with
      // no change after it, a prune would otherwise leave the replica over the limit for good).
      const wait = this.recheckAt - Date.now();
      if (wait > 0) return this.recheckLater(wait);
      this.recheckAt = Date.now() + this.overLimitRecheckMs;
      this.reloadAll = true;
    } else if (id === '*') {
      this.wholeTableChanged();
    } else if (this.reloadAll) {
      // The reload about to start reads it. Meanwhile memory does not answer as fresh: a reload is
      // pending only before the first load, after the feed was lost, or after a whole change.
      return;
    } else if (this.pending.size >= this.bulkChanges) {
      // A bulk insert or delete announces each row: read back one by one, half a million ids were
      // held twice over (+105 MB resident at 1,000,000 images) for 7 s. One reload reads them all.
      this.opts.log?.info({ pending: this.pending.size }, 'a burst of changes to the allowlist: reloading the whole index');
      this.pending.clear();
      this.wholeTableChanged();
    } else return this.readBack(id);
    this.drain();
  }

  private recheckLater(ms: number): void {
    if (this.recheckTimer || this.closed) return;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = undefined;
      if (this.tooLarge) this.changed('*');
    }, ms);
    this.recheckTimer.unref();
  }

  private wholeTableChanged(): void {
    this.reloadAll = true;
    const now = Date.now();
    this.wholeChangeSince ??= now;
    if (this.reloadStartedAt !== undefined) this.wholeChangeDuringReload ??= now;
    this.watchOverdue();
  }

  /** The id changed: it is read from the database again, and is not exact in memory until it is. */
  private readBack(id: string): void {
    const now = Date.now();
    this.pending.set(id, now);
    if (!this.unconfirmed.has(id)) this.unconfirmed.set(id, now);
    this.unconfirmedSince ??= now;
    this.watchOverdue();
    this.drain();
  }

  lost(): void {
    this.noteExact(); // remember how current the state was when the feed went
    this.loaded = false;
  }

  probed(error?: unknown): void {
    if (error !== undefined) return this.noteFailure(error);
    if (this.unreachableSince === undefined) return;
    this.opts.log?.info({ unreachableMs: Date.now() - this.unreachableSince }, 'database reachable again');
    this.unreachableSince = undefined;
    this.outageLogged = 'no';
  }

  private withinGrace(): boolean {
    // A TRUNCATE or a burst heard and not yet re-read: the last state in memory holds what they removed.
    if (this.wholeChangeSince !== undefined) return false;
    return !this.tooLarge && this.everLoaded && this.opts.outageGraceMs > 0 && Date.now() - this.exactAsOf < this.opts.outageGraceMs;
  }

  /** Applied (read from the database after it changed): these ids are exact in memory again, unless heard since. */
  private confirm(ids: Iterable<string>): void {
    for (const id of ids) {
      const heardAgain = this.pending.get(id);
      if (heardAgain === undefined) this.unconfirmed.delete(id);
      else this.unconfirmed.set(id, heardAgain);
    }
    let oldest: number | undefined;
    for (const at of this.unconfirmed.values()) if (oldest === undefined || at < oldest) oldest = at;
    this.unconfirmedSince = oldest;
    if (oldest === undefined && this.wholeChangeSince === undefined) this.overdueLogged = false;
  }

  /** When the oldest change not yet applied was heard, one id's or the whole table's (Infinity: none). */
  private get unappliedSince(): number {
    return Math.min(this.unconfirmedSince ?? Infinity, this.wholeChangeSince ?? Infinity);
  }

  /** Arms one timer for when the oldest change not yet applied becomes overdue. */
  private watchOverdue(): void {
    if (this.overdueTimer || this.closed) return;
    const oldest = this.unappliedSince;
    if (oldest === Infinity) return;
    this.overdueTimer = setTimeout(() => this.dropOverdue(), Math.max(0, oldest + this.staleAfterMs - Date.now()));
    this.overdueTimer.unref();
  }

  /**
   * Changes heard `staleAfterMs` ago and still not applied (the database slow, a table lock, the
   * pool busy): answers already come from the database (`fresh`); the changed images also leave
   * memory, so that if the database then fails, the outage's answers from memory deny them rather
   * than admit what a DELETE or a tag change removed. They come back when they are read.
   */
  private dropOverdue(): void {
    this.overdueTimer = undefined;
    const now = Date.now();
    let dropped = 0;
    for (const [id, at] of this.unconfirmed) {
      if (now - at >= this.staleAfterMs && !this.rereadSince(id, at) && this.index.remove(id)) dropped++;
    }
    const overdue = this.unappliedSince;
    if (overdue !== Infinity && now - overdue >= this.staleAfterMs && !this.overdueLogged) {
      this.overdueLogged = true;
      this.opts.log?.warn(
        { unapplied: this.unconfirmed.size, wholeTable: this.wholeChangeSince !== undefined, dropped, overdueMs: now - overdue },
        'changes to the allowlist could not be read back in time; answering from the database until they are',
      );
    }
    // re-armed for the next change to become overdue (none: the next change arms it)
    if (this.unconfirmed.size > 0 || this.wholeChangeSince !== undefined) {
      let next = Infinity;
      for (const at of this.unconfirmed.values()) if (now - at < this.staleAfterMs) next = Math.min(next, at);
      this.overdueTimer = setTimeout(() => this.dropOverdue(), next === Infinity ? this.staleAfterMs : next + this.staleAfterMs - now);
      this.overdueTimer.unref();
    }
  }

  /**
   * Whether the full reload under way has read the image since its change was heard at `at` (and
   * it was not heard again since): memory holds it as it is. Dropping it then lost it for good: a
   * reload slower than `staleAfterMs` (a burst of 100,000 changes on a busy host) ended with half
   * the allowlist missing from memory, answered as fresh, its images denied.
   */
  private rereadSince(id: string, at: number): boolean {
    const started = this.reloadStartedAt;
    if (started === undefined || at > started) return false;
    const heardAgain = this.pending.get(id);
    return (heardAgain === undefined || heardAgain <= started) && this.index.sweptIn(id);
  }

  private outage(): 'stale' | 'unavailable' {
    const stale = this.withinGrace();
    const state = stale ? 'stale' : 'closed';
    if (this.outageLogged !== state) {
      this.outageLogged = state;
      const asOf = this.everLoaded ? new Date(this.exactAsOf).toISOString() : null;
      if (stale) {
        this.opts.log?.warn(
          { exactAsOf: asOf, graceMs: this.opts.outageGraceMs, images: this.index.size },
          'database unreachable; answering from the last exact in-memory state',
        );
      } else {
        this.opts.log?.error(
          { exactAsOf: asOf, graceMs: this.opts.outageGraceMs },
          'database unreachable and the in-memory state is older than the outage grace; admission fails closed',
        );
      }
    }
    return stale ? 'stale' : 'unavailable';
  }

  /** Applies what changed, one batch at a time, so a later read never loses to an earlier one. */
  private drain(): void {
    if (this.draining) return;
    this.draining = (async () => {
      while (!this.closed && this.feed.state === 'listening' && (this.reloadAll || this.pending.size)) {
        try {
          if (this.reloadAll) {
            this.reloadAll = false;
            this.pending.clear();
            this.loaded = false;
            // what the reload covers: every change heard before it starts
            const covered = [...this.unconfirmed.keys()];
            this.reloadStartedAt = Date.now();
            this.wholeChangeDuringReload = undefined;
            await this.reload().finally(() => {
              this.reloadStartedAt = undefined;
            });
            this.loaded = !this.tooLarge && this.feed.state === 'listening';
            this.everLoaded ||= this.loaded;
            // The reload applied every whole change heard before it began, not one heard while it
            // ran (the next reload does): until then, an outage must not answer from memory.
            this.wholeChangeSince = this.wholeChangeDuringReload;
            this.confirm(covered);
          } else {
            // At most a page at a time: a bulk insert of 50,000 images read back in one statement
            // held all their rows at once (+30 MB resident at 1,300,000 images).
            await this.apply(Array.from(take(this.pending.keys(), this.pageSize)));
          }
          if (this.refreshFailures > 0) {
            this.opts.log?.info({ attempts: this.refreshFailures }, 'image index refreshed again');
            this.refreshFailures = 0;
            this.refreshFailedWith = undefined;
          }
        } catch (err) {
          this.noteFailure(err);
          this.reloadAll ||= !this.loaded;
          const code = (err as { code?: string }).code;
          if (this.refreshFailures++ === 0 || code !== this.refreshFailedWith) {
            this.opts.log?.warn({ code, message: (err as Error).message }, 'image index refresh failed; retrying');
          }
          this.refreshFailedWith = code;
          await sleep(250);
        }
      }
    })().finally(() => {
      this.draining = undefined;
    });
  }

  private async apply(ids: string[]): Promise<void> {
    const heard = ids.map((id) => this.pending.get(id)!);
    for (const id of ids) this.pending.delete(id);
    const rows = await this.sql.byIds(ids).catch((err: unknown) => {
      ids.forEach((id, i) => {
        if (!this.pending.has(id)) this.pending.set(id, heard[i]!);
      });
      throw err;
    });
    const found = new Set<string>();
    for (const row of rows) {
      found.add(row.id);
      if (!this.pending.has(row.id)) this.index.putRow(row);
    }
    // An id heard again while this read ran (a PUT or DELETE answered by this replica, or another
    // notification) is left as it is: the read may have seen the database before that change, and
    // applied after it, it put back an image whose DELETE this replica had answered. The id is
    // still pending, and the next read applies it.
    for (const id of ids) if (!found.has(id) && !this.pending.has(id)) this.index.remove(id);
    this.confirm(ids);
    const outgrown = this.outgrown();
    if (outgrown) this.giveUp(outgrown);
  }

  /** Why the index cannot be kept in memory, or undefined while it fits. */
  private outgrown(): Outgrown | undefined {
    const images = this.index.size;
    if (images > this.maxImages) return { images, limit: 'images' };
    const { heap, outside } = this.index.memory();
    if (heap > this.maxMemory.heap) return { images, limit: 'heap', estimatedBytes: heap, maxBytes: this.maxMemory.heap };
    if (heap + outside > this.maxMemory.total)
      return { images, limit: 'memory', estimatedBytes: heap + outside, maxBytes: this.maxMemory.total };
    if (heap + outside < this.maxMemory.rssFromIndex) return undefined;
    const rss = process.memoryUsage.rss();
    if (rss > this.maxMemory.rss) return { images, limit: 'rss', rssBytes: rss, maxBytes: this.maxMemory.rss };
    return undefined;
  }

  /** Frees the index: the allowlist outgrew it. Tried again on a reconnect, or a change after a while. */
  private giveUp(outgrown: Outgrown): void {
    this.tooLarge = true;
    this.recheckAt = Date.now() + this.overLimitRecheckMs;
    this.loaded = false;
    this.everLoaded = false;
    this.index = new ImageIndex(this.opts.answerCacheBytes === undefined ? {} : { answerCacheBytes: this.opts.answerCacheBytes });
    // Changes heard while the load that gave up ran were queued to be read back into the index
    // just dropped, and may have come after the rows it counted: they are changes to an over-limit
    // allowlist, which may fit now, as one heard from here on would be.
    if (this.pending.size > 0) {
      const moot = [...this.pending.keys()];
      this.pending.clear();
      this.confirm(moot);
      this.changed('*');
    }
    if (this.overLimitLogged) return;
    this.overLimitLogged = true;
    const { images, limit, ...bytes } = outgrown;
    this.opts.log?.error(
      { images, maxImages: this.maxImages, ...bytes },
      `${OUTGROWN[limit]}: this replica answers from the database, without an in-memory index or outage grace; ${
        limit === 'images' ? 'raise the limit together with the memory limit' : 'raise the memory limit (and --max-old-space-size)'
      }`,
    );
  }

  /**
   * A row of the reload, unless its image was heard of since the reload began (`pending`, cleared
   * as it began): the page may have read it before that change (a DELETE this replica answered is
   * already applied), so memory keeps what it holds of it, and the read-back that follows the
   * reload applies the id.
   */
  private putLoaded(row: IndexRow): void {
    if (this.pending.has(row.id)) this.index.keepInSweep(row.id);
    else this.index.putRow(row);
  }

  /** Re-reads the whole table into the index in pages; images no page returned are dropped. */
  private async reload(): Promise<void> {
    const started = Date.now();
    const estimated = await this.sql.estimatedCount();
    if (estimated > this.maxImages) {
      // The estimate (pg_class.reltuples) lags a bulk delete until the next ANALYZE: count, up to
      // one past the limit, before giving up on an allowlist that may fit after all.
      const counted = await this.sql.countUpTo(this.maxImages + 1);
      if (counted > this.maxImages) return this.giveUp({ images: counted, limit: 'images' });
    }
    this.tooLarge = false;
    // Room for 10% more than the estimate: reltuples is a sample's figure (1,499,970 for
    // 1,500,000 rows after VACUUM ANALYZE), and images are written while the index loads. Without
    // it, the last few rows grew every column by half at once, while the old ones were still
    // held: the peak RSS at 1,500,000 images went from ~290 MB to ~390 MB. Room not yet used
    // costs almost nothing resident: the kernel maps zeroed pages only when they are written.
    this.index.reserve(Math.min(Math.ceil(estimated * 1.1) + 1000, this.maxImages));
    this.index.beginSweep();
    try {
      for (let after = ''; ;) {
        const page = await this.sql.loadPage(after, this.pageSize, (row) => this.putLoaded(row));
        const outgrown = this.outgrown();
        if (outgrown) throw new TooLarge(outgrown);
        if (page.rows < this.pageSize) break;
        after = page.lastId;
      }
    } catch (err) {
      this.index.abortSweep();
      if (err instanceof TooLarge) return this.giveUp(err.outgrown);
      throw err;
    }
    const dropped = this.index.endSweep();
    this.overLimitLogged = false;
    this.opts.log?.info({ images: this.index.size, dropped, ms: Date.now() - started }, 'image index loaded');
  }
}

interface Outgrown {
  images: number;
  limit: 'images' | 'heap' | 'memory' | 'rss';
  estimatedBytes?: number;
  rssBytes?: number;
  maxBytes?: number;
}

const OUTGROWN: Record<Outgrown['limit'], string> = {
  images: 'the allowlist is larger than --index-max-images',
  heap: "the allowlist's names would take more of the JavaScript heap than the index may",
  memory: `the allowlist would take more than ${MEMORY_SHARE * 100}% of the memory limit`,
  rss: `the process reached ${RSS_SHARE * 100}% of the memory limit while loading the allowlist`,
};

class TooLarge extends Error {
  constructor(readonly outgrown: Outgrown) {
    super(`${outgrown.images} images (${outgrown.limit})`);
  }
}

function* take<T>(items: Iterable<T>, n: number): Generator<T> {
  if (n <= 0) return;
  for (const item of items) {
    yield item;
    if (--n === 0) return;
  }
}
