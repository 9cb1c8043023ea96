import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';
import type { DatabaseTarget } from './database-tls.js';
import { hostSocket } from './host-socket.js';
import { alwaysOn, ANNOUNCING, announces, CHANNEL, SERVER_MS, type ImageSql } from './image-sql.js';

export interface FeedLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ChangeFeedListener {
  /** The listener is connected (again): anything may have changed while it was not. */
  connected(): void;
  /**
   * An image id changed, or '*': everything may have (a TRUNCATE, or the table or its triggers
   * replaced or re-enabled, as a restore does without announcing a row).
   */
  changed(id: string): void;
  /** The listener is gone or could not connect. */
  lost(): void;
  /** A heartbeat went through the pool (true), or failed with this error. */
  probed(error?: unknown): void;
}

export interface ChangeFeedOptions {
  /** How often this replica NOTIFYs a heartbeat of its own and so proves its listener current. */
  heartbeatMs?: number;
  /** A listener that hears no heartbeat for this long is taken as dead and reconnected. */
  silentAfterMs?: number;
  /** Pause between reconnect attempts: short, so the feed is back within a second of the database. */
  retryMs?: number;
  /** Seconds a connection attempt may take. */
  connectTimeoutS?: number;
  log?: FeedLogger;
}

/** `down`: not connected (the connection was lost, or the last attempt to connect failed). */
export type FeedState = 'connecting' | 'listening' | 'down';

/**
 * The allowlist's change feed: one dedicated connection LISTENing on the images channel, one
 * reconnect loop, and a heartbeat that measures how current the listener is.
 *
 * Every `heartbeatMs` this replica NOTIFYs `heartbeat:<nonce>:<sent at>` on that connection.
 * Notifications arrive in commit order, so hearing one back proves that every change committed
 * before it was sent has been delivered: `currentAsOf` is the send time of the newest heartbeat
 * heard. A connection that goes silent (half-open TCP, a stalled proxy) is replaced.
 */
export class ChangeFeed {
  state: FeedState = 'connecting';
  /** Every change committed before this time (ms since the epoch) has been delivered. */
  currentAsOf = 0;
  /** Reconnect attempts since the feed last listened; 0 while listening. */
  failures = 0;
  /**
   * The table's triggers announce every change (as of the last heartbeat). Without them no change
   * reaches the feed, so memory cannot follow the table: answers come from the database.
   */
  announcing = false;
  /** The triggers as ANNOUNCING last read them. */
  private triggers: string | undefined;

  private closed = false;
  private running: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private dropCurrent: (() => void) | undefined;
  private current: postgres.Sql | undefined;
  private probing = false;
  private readonly nonce = randomUUID();
  private readonly heartbeatMs: number;
  private readonly silentAfterMs: number;
  private readonly retryMs: number;
  private readonly connectTimeoutS: number;

  constructor(
    private readonly target: DatabaseTarget,
    private readonly images: ImageSql,
    private readonly listener: ChangeFeedListener,
    private readonly opts: ChangeFeedOptions = {},
  ) {
    this.heartbeatMs = opts.heartbeatMs ?? 200;
    this.silentAfterMs = opts.silentAfterMs ?? 3000;
    this.retryMs = opts.retryMs ?? 250;
    this.connectTimeoutS = opts.connectTimeoutS ?? 5;
  }

  start(): this {
    this.running = this.run();
    this.heartbeat = setInterval(() => this.beat(), this.heartbeatMs);
    this.heartbeat.unref();
    return this;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeat);
    this.dropCurrent?.();
    await this.running;
  }

  /**
   * While listening, the heartbeat goes out on the listener's own connection, so a pool busy
   * with long lists cannot delay it into false staleness; PostgreSQL delivers a session's own
   * notifications to it, in commit order with everyone else's. While not listening, a ping
   * through the pool tells whether the database is reachable at all (a listener may fail where
   * the pool works). One probe at a time, so a hung database does not pile them up.
   *
   * A heartbeat that fails on the listener's connection says that connection is gone, not that
   * the database is: the connection is replaced, and the pool's ping at the next beat tells
   * whether the database is reachable. Taken as an outage, it made a replica whose listener
   * dropped answer 503 (or from its last state) while the database served every query.
   */
  private beat(): void {
    if (this.state === 'listening' && Date.now() - this.currentAsOf > this.silentAfterMs) {
      this.opts.log?.warn({ silentMs: Date.now() - this.currentAsOf }, 'change feed silent; reconnecting');
      this.dropCurrent?.();
    }
    if (this.probing) return;
    this.probing = true;
    const conn = this.state === 'listening' ? this.current : undefined;
    // The heartbeat reads the server's clock too, for the deadlines writes carry (database-clock.ts).
    // And which triggers announce changes: a restore replaces them without announcing anything.
    const heartbeat = async (conn: postgres.Sql) => {
      let triggers: string | undefined;
      await this.images.clock.read(async () => {
        const rows = await conn<{ serverMs: number; announcing: string }[]>`
          SELECT pg_notify(${CHANNEL}, ${`heartbeat:${this.nonce}:${Date.now()}`}), ${conn.unsafe(SERVER_MS)}, ${conn.unsafe(ANNOUNCING)}`.execute();
        triggers = rows[0]?.announcing;
        return rows;
      });
      if (triggers !== undefined && conn === this.current && this.state === 'listening') this.triggersAre(triggers, true);
    };
    const probe = conn ? withTimeout(heartbeat(conn), this.connectTimeoutS * 1000) : this.images.ping();
    probe
      .then(
        () => this.listener.probed(),
        (err: unknown) => {
          if (!conn) return this.listener.probed(err ?? new Error('heartbeat failed'));
          if (conn === this.current) this.dropCurrent?.();
        },
      )
      .finally(() => (this.probing = false));
  }

  /** The one reconnect loop: connect and LISTEN, serve until the connection is lost, pause, again. */
  private async run(): Promise<void> {
    while (!this.closed) {
      let lost!: () => void;
      const gone = new Promise<void>((resolve) => (lost = resolve));
      const conn = postgres(this.target.url, {
        ...(this.target.ssl ? { ssl: this.target.ssl } : {}),
        max: 1,
        max_lifetime: null,
        idle_timeout: 0,
        fetch_types: false,
        connect_timeout: this.connectTimeoutS,
        onnotice: () => {},
        onclose: () => lost(),
        // postgres.js calls this for every notification on the connection, and takes a socket
        // factory (both missing from its typings); ours names the server for TLS (host-socket.ts)
        ...({ onnotify: (_channel: string, payload: string) => this.heard(payload), socket: hostSocket() } as object),
      });
      this.dropCurrent = lost;
      this.current = conn;
      try {
        this.state = 'connecting';
        await withTimeout(conn`LISTEN ${conn(CHANNEL)}`.execute(), this.connectTimeoutS * 1000);
        // read after LISTEN and before the reload: a replacement after this is seen by a heartbeat
        const [triggers] = await withTimeout(
          conn<{ announcing: string }[]>`SELECT ${conn.unsafe(ANNOUNCING)}`.execute(),
          this.connectTimeoutS * 1000,
        );
        if (this.closed) break;
        this.triggersAre(triggers?.announcing ?? '', false);
        if (this.failures > 0) this.opts.log?.info({ attempts: this.failures }, 'change feed listening again');
        this.failures = 0;
        this.currentAsOf = Date.now(); // a grace period of one silence window for the first heartbeat
        this.state = 'listening';
        this.listener.connected();
        await gone;
        if (!this.closed) this.listener.lost();
        this.state = 'down'; // until the next attempt: no heartbeat goes out on the lost connection
      } catch (err) {
        if (this.closed) break;
        this.failures++;
        const code = (err as { code?: string }).code;
        if (this.failures === 1) this.opts.log?.warn({ code }, 'change feed cannot connect; retrying');
        this.state = 'down';
        this.listener.lost();
      } finally {
        this.dropCurrent = undefined;
        this.current = undefined;
        await conn.end({ timeout: 0 }).catch(() => {});
      }
      if (!this.closed) await sleep(this.retryMs);
    }
    this.state = 'connecting';
  }

  /**
   * The triggers as read now. Changed since the last reading (`replaced`, on the same connection),
   * the table may hold anything without a change having been announced: the whole index is
   * reloaded. Logged once per change of the triggers.
   */
  private triggersAre(triggers: string, replaced: boolean): void {
    if (triggers === this.triggers) return;
    const before = this.triggers;
    this.triggers = triggers;
    this.announcing = announces(triggers);
    if (!this.announcing) {
      this.opts.log?.warn(
        { triggers: triggers || null },
        'changes to the images table are not announced (the table or its notify triggers are missing or disabled); answering from the database',
      );
    } else if (replaced || (before !== undefined && !announces(before))) {
      this.opts.log?.warn({ triggers }, 'the images table or its notify triggers were replaced (a restore?); reloading the whole index');
    }
    if (replaced) this.listener.changed('*');
    if (this.announcing && !alwaysOn(triggers)) this.enableAlways(triggers);
  }

  /**
   * Migration 006 made the triggers fire ALWAYS, also in sessions with session_replication_role =
   * replica. `ALTER TABLE images ENABLE TRIGGER ALL`, which pg_restore --disable-triggers runs after
   * loading the rows (and an operator after disabling them), sets them back to origin only, and a
   * DELETE made in replica role was again admitted from memory until restart: they are set back.
   * Changing them changes their signature, so the index is reloaded once more after it.
   */
  private enableAlways(triggers: string): void {
    this.images.sql
      .begin(async (tx) => {
        await tx`SET LOCAL lock_timeout = '2s'`;
        await tx`ALTER TABLE images ENABLE ALWAYS TRIGGER images_notify_row`;
        await tx`ALTER TABLE images ENABLE ALWAYS TRIGGER images_notify_truncate`;
      })
      .then(
        () =>
          this.opts.log?.warn(
            { triggers },
            'the notify triggers of the images table fired only on origin (ENABLE TRIGGER ALL, as pg_restore --disable-triggers runs); enabled ALWAYS again',
          ),
        (err: unknown) =>
          this.opts.log?.warn(
            { triggers, code: (err as { code?: string }).code, message: (err as Error).message },
            'the notify triggers of the images table fire only on origin, and could not be enabled ALWAYS again: changes made with session_replication_role = replica are not announced; run ALTER TABLE images ENABLE ALWAYS TRIGGER images_notify_row, and images_notify_truncate',
          ),
      );
  }

  private heard(payload: string): void {
    if (payload.startsWith('heartbeat:')) {
      const [, nonce, sent] = payload.split(':');
      if (nonce === this.nonce) this.currentAsOf = Math.max(this.currentAsOf, Number(sent));
      return;
    }
    this.listener.changed(payload);
  }
}

/** A LISTEN on a connection that hangs after connecting must not stall the loop either. */
async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  const timer = new AbortController();
  const late = sleep(ms, undefined, { signal: timer.signal }).then(() => {
    throw Object.assign(new Error(`LISTEN did not complete within ${ms} ms`), { code: 'CONNECT_TIMEOUT' });
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    timer.abort();
    late.catch(() => {});
  }
}
