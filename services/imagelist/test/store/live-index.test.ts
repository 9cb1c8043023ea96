import type { App } from '@platform/http-common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { connect } from '../../src/store/database.js';
import { ImageIndex, type IndexRow } from '../../src/store/image-index.js';
import { ImageSql } from '../../src/store/image-sql.js';
import { ImageStore } from '../../src/store/images.js';
import { LiveIndex } from '../../src/store/live-index.js';
import { DIGEST_A, DIGEST_B, DIGEST_C } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { TcpProxy, viaProxy } from '../support/tcp-proxy.js';

let db: TestDatabase;
let proxy: TcpProxy;
const closers: (() => Promise<void>)[] = [];

/** One replica: its own pool, its own index (listening through `listenVia`), its own app. */
async function replica(listenUrl: string): Promise<{ app: App; index: LiveIndex }> {
  const sql = connect({ url: db.url, max: 4 });
  const index = new LiveIndex(new ImageSql(sql, 2000), { url: listenUrl }, { outageGraceMs: 0 }).start();
  const app = await buildApp({ sql, live: index, logger: false, defaultMetrics: false });
  closers.push(async () => {
    await app.close();
    await index.close();
    await sql.end({ timeout: 1 });
  });
  await index.ready();
  return { app, index };
}

const review = (image: string) => ({
  apiVersion: 'imagepolicy.k8s.io/v1alpha1',
  kind: 'ImageReview',
  spec: { containers: [{ image }], namespace: 'default' },
});
const allowed = async (app: App, image: string) =>
  (await app.inject({ method: 'POST', url: '/admission/imagereview', payload: review(image) })).json().status.allowed as boolean;

async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now() - started;
}

/** ImageSql whose load pages each take 40 ms longer (a slow reload); `onLoad` runs as each whole load begins. */
class SlowPages extends ImageSql {
  constructor(
    sql: ImageSql['sql'],
    deadlineMs: number,
    private readonly onLoad?: () => Promise<void>,
  ) {
    super(sql, deadlineMs);
  }

  override async loadPage(afterId: string, limit: number, put: (row: IndexRow) => void) {
    if (afterId === '') await this.onLoad?.();
    const page = await super.loadPage(afterId, limit, put);
    await new Promise((r) => setTimeout(r, 40));
    return page;
  }
}

let a: { app: App; index: LiveIndex };
let b: { app: App; index: LiveIndex };

beforeAll(async () => {
  db = await createTestDatabase();
  // LISTEN needs a second connection, which embedded PGlite does not serve.
  if (db.kind === 'embedded') return;
  const target = new URL(db.url);
  proxy = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
  a = await replica(db.url);
  b = await replica(viaProxy(db.url, proxy)); // b's listener can be cut
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await proxy?.stop();
  await db?.close();
});

describe('in-memory index across replicas', () => {
  beforeEach(({ skip }) => {
    if (db.kind === 'embedded') skip();
  });

  it('a write on one replica is admitted on the other, and a DELETE stops admission there within one second', async () => {
    const put = await a.app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_A, name: 'quay.io/team/app', tags: ['v1'] } });
    expect(put.statusCode).toBe(200);
    expect(a.index.index.get(DIGEST_A)).toBeDefined(); // read-your-writes on the writer
    await within(1000, () => allowed(b.app, 'quay.io/team/app:v1'));
    // the answer may have come from the database (b not fresh for a moment on a loaded machine): memory follows
    await within(1000, async () => b.index.fresh && b.index.index.get(DIGEST_A) !== undefined);
    expect(JSON.parse(b.index.index.get(DIGEST_A)!.json).tags).toEqual(['v1']);

    expect((await a.app.inject({ method: 'DELETE', url: `/images/${DIGEST_A}` })).statusCode).toBe(204);
    const elapsed = await within(1000, async () => !(await allowed(b.app, 'quay.io/team/app:v1')));
    expect(elapsed).toBeLessThan(1000);
    expect((await b.app.inject(`/images/${DIGEST_A}`)).statusCode).toBe(404);
  });

  it('follows tag changes and digest lookups', async () => {
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_B, name: 'nginx', tags: ['1.25'] } });
    await within(1000, () => allowed(b.app, 'docker.io/library/nginx:1.25'));
    expect(await allowed(b.app, `nginx@sha256:${DIGEST_B}`)).toBe(true);
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_B, name: 'nginx', tags: ['1.26'] } });
    await within(1000, async () => !(await allowed(b.app, 'nginx:1.25')));
    expect(await allowed(b.app, 'nginx:1.26')).toBe(true);
  });

  it('answers name lookups from memory in the same order as the database', async () => {
    await db.sql`INSERT INTO images (id, name, tags, created_at, updated_at) VALUES
      (${DIGEST_C}, 'quay.io/team/web', '{a}', '2020-01-01T00:00:00Z', '2020-01-03T00:00:00Z'),
      (${'c'.repeat(64)}, 'quay.io/team/web', '{b}', '2020-01-02T00:00:00Z', '2020-01-02T00:00:00Z'),
      (${'d'.repeat(64)}, 'quay.io/team/web', '{c}', '2020-01-02T00:00:00Z', '2020-01-01T00:00:00Z')`;
    await within(1000, async () => b.index.index.ordered('id', 'quay.io/team/web').length === 3);
    for (const sort of ['created_at', 'updated_at', 'name', 'id']) {
      const fromIndex = (await b.app.inject(`/images?name=quay.io/team/web&sort=${sort}`)).json();
      const fromDb = (await b.app.inject(`/images?name=quay.io/team/web&sort=${sort}&limit=10`)).json(); // paginated reads go to the database
      expect(fromIndex).toEqual(fromDb);
    }
  });

  it('never answers a name lookup from a rendered answer older than the last change', async () => {
    const tagsOnB = async () =>
      (await b.app.inject('/images?name=quay.io/team/web&sort=id')).json().map((i: { tags: string[] }) => i.tags.join());
    const before = await tagsOnB(); // rendered and cached now
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: 'c'.repeat(64), name: 'quay.io/team/web', tags: ['changed'] } });
    await within(1000, async () => (await tagsOnB()).includes('changed'));
    expect(await tagsOnB()).not.toEqual(before);
    await a.app.inject({ method: 'DELETE', url: `/images/${'c'.repeat(64)}` });
    await within(1000, async () => (await tagsOnB()).length === before.length - 1);
  });

  it('decides a review of several images exactly as the database does', async () => {
    const digest = 'e'.repeat(64);
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: digest, name: 'quay.io/team/multi', tags: ['v1'] } });
    await within(1000, () => allowed(a.app, 'quay.io/team/multi:v1'));
    const fromDatabase = await buildApp({ sql: db.sql, logger: false, defaultMetrics: false });
    closers.push(() => fromDatabase.close());
    const containers = [
      { name: 'ok-by-tag', image: 'quay.io/team/multi:v1' },
      { name: 'missing', image: 'quay.io/team/multi:v9' },
      { name: 'invalid', image: 'Quay.io/UPPER:v1' },
      { name: 'missing-again', image: 'quay.io/team/multi:v9' },
      { name: 'ok-by-digest', image: `quay.io/team/multi@sha256:${digest}` },
      { name: 'missing-digest', image: `quay.io/team/multi@sha256:${'fedcba9876543210'.repeat(4)}` },
    ];
    const body = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'u-1',
        kind: { group: '', version: 'v1', kind: 'Pod' },
        namespace: 'default',
        operation: 'CREATE',
        object: { spec: { containers } },
      },
    };
    const ask = async (app: App) => (await app.inject({ method: 'POST', url: '/admission/validate', payload: body })).json().response;
    const fromMemory = await ask(a.app);
    expect(a.index.fresh).toBe(true);
    expect(fromMemory).toEqual(await ask(fromDatabase));
    expect(fromMemory.allowed).toBe(false);
    // every failed image once, in the order the containers stand
    expect(fromMemory.status.message).toBe(
      'images not on the allowlist: quay.io/team/multi:v9 (containers[1] (missing)) as quay.io/team/multi:v9; ' +
        'Quay.io/UPPER:v1 (containers[2] (invalid)): not a valid image reference; ' +
        `quay.io/team/multi@sha256:${'fedcba9876543210'.repeat(4)} (containers[5] (missing-digest)) as quay.io/team/multi@sha256:${'fedcba9876543210'.repeat(4)}`,
    );
  });

  it('exports its size and freshness as metrics', async () => {
    const text = (await b.app.inject('/metrics')).body;
    expect(text).toMatch(/^imagelist_index_fresh 1$/m);
    expect(text).toMatch(new RegExp(`^imagelist_index_images ${b.index.index.size}$`, 'm'));
  });

  it('applies a bulk insert larger than a page, a page per statement, all of it', async () => {
    const sql = connect({ url: db.url, max: 2 });
    const small = new LiveIndex(new ImageSql(sql, 2000), { url: db.url }, { outageGraceMs: 0, loadPageSize: 7 }).start();
    closers.push(async () => {
      await small.close();
      await sql.end({ timeout: 1 });
    });
    await small.ready();
    const ids = Array.from({ length: 30 }, (_, n) => `b0${n.toString(16).padStart(62, '0')}`);
    await db.sql`
      INSERT INTO images (id, name, tags)
      SELECT id, 'quay.io/team/bulk', '{v1}' FROM unnest(${ids}::text[]) AS id`;
    await within(2000, async () => small.fresh && ids.every((id) => small.index.get(id) !== undefined));
    await db.sql`DELETE FROM images WHERE id = ANY(${ids})`;
    await within(2000, async () => small.fresh && ids.every((id) => small.index.get(id) === undefined));
  });

  it('applies a burst of more changes than bulkChanges with one reload of the whole index', async () => {
    const sql = connect({ url: db.url, max: 2 });
    const infos: string[] = [];
    const log = { info: (_: object, msg: string) => void infos.push(msg), warn() {}, error() {} };
    class CountingSql extends ImageSql {
      loads = 0;
      byIdReads = 0;
      override loadPage(afterId: string, limit: number, put: (row: IndexRow) => void) {
        if (afterId === '') this.loads++;
        return super.loadPage(afterId, limit, put);
      }
      override byIds(ids: readonly string[]) {
        this.byIdReads++;
        return super.byIds(ids);
      }
    }
    const images = new CountingSql(sql, 2000);
    const bursty = new LiveIndex(images, { url: db.url }, { outageGraceMs: 0, loadPageSize: 7, bulkChanges: 10, log }).start();
    closers.push(async () => {
      await bursty.close();
      await sql.end({ timeout: 1 });
    });
    await bursty.ready();
    expect(images.loads).toBe(1);
    const ids = Array.from({ length: 40 }, (_, n) => `b1${n.toString(16).padStart(62, '0')}`);
    await db.sql`INSERT INTO images (id, name, tags) SELECT id, 'quay.io/team/burst', '{v1}' FROM unnest(${ids}::text[]) AS id`;
    await within(2000, async () => bursty.fresh && ids.every((id) => bursty.index.get(id) !== undefined));
    expect(images.loads).toBe(2);
    expect(images.byIdReads).toBeLessThanOrEqual(2); // the first 10 ids, at most, read back by id
    expect(infos).toContain('a burst of changes to the allowlist: reloading the whole index');
    await db.sql`DELETE FROM images WHERE id = ANY(${ids})`;
    await within(2000, async () => bursty.fresh && ids.every((id) => bursty.index.get(id) === undefined));
    expect(images.loads).toBe(3);
    // Fewer changes than that are read back by id, as before.
    await db.sql`INSERT INTO images (id, name, tags) SELECT id, 'quay.io/team/burst', '{v1}' FROM unnest(${ids.slice(0, 5)}::text[]) AS id`;
    await within(2000, async () => bursty.fresh && ids.slice(0, 5).every((id) => bursty.index.get(id) !== undefined));
    expect(images.loads).toBe(3);
    await db.sql`DELETE FROM images WHERE id = ANY(${ids})`;
  });

  it('keeps what a burst reload has read even when the reload outlasts the time changes may wait', async () => {
    // A reload slower than staleAfterMs (100,000 changes on a busy host): the changes it covers
    // became overdue while it ran, and were dropped from memory after it had read them.
    const sql = connect({ url: db.url, max: 2 });
    const filler = Array.from({ length: 300 }, (_, n) => `fe${n.toString(16).padStart(62, '0')}`);
    await db.sql`INSERT INTO images (id, name, tags) SELECT id, 'quay.io/team/filler', '{v1}' FROM unnest(${filler}::text[]) AS id`;
    const opts = { outageGraceMs: 0, loadPageSize: 25, bulkChanges: 20, staleAfterMs: 100 };
    const slow = new LiveIndex(new SlowPages(sql, 2000), { url: db.url }, opts).start();
    closers.push(async () => {
      await slow.close();
      await sql.end({ timeout: 1 });
      await db.sql`DELETE FROM images WHERE id = ANY(${filler})`;
    });
    await slow.ready();
    // first in id order, so the reload reads them long before it ends
    const ids = Array.from({ length: 200 }, (_, n) => `00${n.toString(16).padStart(62, '0')}`);
    await db.sql`INSERT INTO images (id, name, tags) SELECT id, 'quay.io/team/early', '{v1}' FROM unnest(${ids}::text[]) AS id`;
    await within(10_000, async () => slow.fresh && ids.every((id) => slow.index.get(id) !== undefined));
    await db.sql`DELETE FROM images WHERE id = ANY(${ids})`;
    await within(10_000, async () => slow.fresh && ids.every((id) => slow.index.get(id) === undefined));
  });

  it('fails closed in an outage after a reload that a burst of changes overtook, until a reload covers the burst', async () => {
    // A burst heard while a reload of an earlier one ran: that reload may have read the table
    // before it. If the database then goes while the next reload runs, memory (which may hold
    // what the second burst deleted) must not be served as the last exact state.
    const target = new URL(db.url);
    const cut = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
    const url = viaProxy(db.url, cut);
    const sql = connect({ url, max: 2, connectTimeout: 1 });
    let loads = 0;
    const onLoad = async () => {
      if (++loads === 3) await cut.cut(); // the database goes as the third load begins
    };
    const filler = Array.from({ length: 600 }, (_, n) => `fd${n.toString(16).padStart(62, '0')}`);
    await db.sql`INSERT INTO images (id, name, tags) SELECT id, 'quay.io/team/filler', '{v1}' FROM unnest(${filler}::text[]) AS id`;
    const live = new LiveIndex(
      new SlowPages(sql, 1000, onLoad),
      { url },
      { outageGraceMs: 60_000, loadPageSize: 25, bulkChanges: 20 },
    ).start();
    closers.push(async () => {
      await live.close();
      await sql.end({ timeout: 1 });
      await cut.stop();
      await db.sql`DELETE FROM images WHERE id = ANY(${filler})`;
    });
    await live.ready();
    expect(live.exactAsOf).toBeGreaterThan(Date.now() - 5000);
    const ids = Array.from({ length: 100 }, (_, n) => `01${n.toString(16).padStart(62, '0')}`);
    await db.sql`INSERT INTO images (id, name, tags) SELECT id, 'quay.io/team/overtaken', '{v1}' FROM unnest(${ids}::text[]) AS id`;
    await within(5000, async () => loads === 2);
    // the second reload has read the new ids (first in id order), and is far from done
    await new Promise((r) => setTimeout(r, 200));
    await db.sql`DELETE FROM images WHERE id = ANY(${ids})`;
    await within(10_000, async () => !live.databaseReachable);
    expect(loads).toBe(3);
    expect(live.fresh).toBe(false);
    expect(live.servingStale).toBe(false);
    await cut.restore();
    await within(10_000, async () => live.fresh && ids.every((id) => live.index.get(id) === undefined));
  });

  it('reloads everything after a TRUNCATE', async () => {
    await db.sql`TRUNCATE images`;
    await within(1000, async () => b.index.index.size === 0 && a.index.index.size === 0);
  });

  it('stops admitting a deleted image within a second while its listener is silent but not closed', async () => {
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_B, name: 'quay.io/team/silent', tags: ['v1'] } });
    await within(1000, () => allowed(b.app, 'quay.io/team/silent:v1'));
    await within(1000, async () => b.index.fresh);
    proxy.freeze();
    try {
      const deleted = Date.now();
      expect((await a.app.inject({ method: 'DELETE', url: `/images/${DIGEST_B}` })).statusCode).toBe(204);
      await within(1000, async () => !(await allowed(b.app, 'quay.io/team/silent:v1')));
      expect(Date.now() - deleted).toBeLessThan(1000);
    } finally {
      proxy.thaw();
    }
    await within(5000, async () => b.index.fresh);
  });

  /** What an index of these rows is estimated to hold (ImageIndex.memory), heap and outside together. */
  async function estimatedBytes(except: string[] = []): Promise<number> {
    const rows = await db.sql<{ id: string; name: string; tags: string[] }[]>`SELECT id, name, tags FROM images`;
    const index = new ImageIndex();
    for (const row of rows) if (!except.includes(row.id)) index.put({ ...row, createdUs: 0, updatedUs: 0 });
    const { heap, outside } = index.memory();
    return heap + outside;
  }
  const deletedToFit = ['1'.repeat(64), '2'.repeat(64)];

  it.each([
    ['--index-max-images', async () => ({ maxImages: 2 }), /^the allowlist is larger than --index-max-images/],
    [
      'the memory the index may take',
      async () => {
        // Between what the three images take and what two of them take.
        const total = Math.round(((await estimatedBytes()) + (await estimatedBytes(['1'.repeat(64)]))) / 2);
        return { maxMemory: { heap: Infinity, total, rss: Infinity, rssFromIndex: 0 } };
      },
      /^the allowlist would take more than 60% of the memory limit/,
    ],
  ])('a replica whose allowlist outgrows %s answers from the database instead', async (_limit, limits, message) => {
    await db.sql`DELETE FROM images`;
    for (const [id, tag] of [
      ['1'.repeat(64), 'big1'],
      ['2'.repeat(64), 'big2'],
      ['3'.repeat(64), 'big3'],
    ] as const) {
      await a.app.inject({ method: 'PUT', url: '/images', payload: { id, name: 'quay.io/team/big', tags: [tag] } });
    }
    const errors: string[] = [];
    const infos: string[] = [];
    const log = {
      info: (_: object, msg: string) => void infos.push(msg),
      warn() {},
      error: (_: object, msg: string) => void errors.push(msg),
    };
    const sql = connect({ url: db.url, max: 2 });
    /** Counts the index's loads: each one means the replica counted the allowlist again. */
    class CountingSql extends ImageSql {
      loads = 0;
      override loadPage(afterId: string, limit: number, put: (row: IndexRow) => void) {
        if (afterId === '') this.loads++;
        return super.loadPage(afterId, limit, put);
      }
    }
    const images = new CountingSql(sql, 2000);
    const small = new LiveIndex(
      images,
      { url: db.url },
      { outageGraceMs: 60_000, ...(await limits()), overLimitRecheckMs: 0, log },
    ).start();
    const app = await buildApp({ sql, live: small, logger: false, defaultMetrics: false });
    closers.push(async () => {
      await app.close();
      await small.close();
      await sql.end({ timeout: 1 });
    });
    // Eventually, not a latency bound: a loaded machine (the whole suite at once) took over 5 s once.
    await within(15_000, async () => errors.length > 0);
    expect(errors[0]).toMatch(message);
    expect(small.fresh).toBe(false);
    expect(small.overLimit).toBe(true);
    expect(small.index.size).toBe(0);
    const metrics = (await app.inject('/metrics')).body;
    expect(metrics).toMatch(/^imagelist_index_over_limit 1$/m);
    expect(metrics).toMatch(/^imagelist_index_fresh 0$/m);
    expect(await allowed(app, 'quay.io/team/big:big2')).toBe(true);
    expect(await allowed(app, 'quay.io/team/big:nope')).toBe(false);
    expect((await app.inject('/health/ready')).statusCode).toBe(200);

    // A change makes it load again: still too large, and said once, not at every try.
    const loads = images.loads;
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: '4'.repeat(64), name: 'quay.io/team/big', tags: ['big4'] } });
    await within(15_000, async () => images.loads > loads && small.overLimit);
    expect(small.fresh).toBe(false);
    expect(await allowed(app, 'quay.io/team/big:big4')).toBe(true);
    // Deletes make it fit: it loads its index by itself, without a reconnect.
    for (const id of deletedToFit) expect((await a.app.inject({ method: 'DELETE', url: `/images/${id}` })).statusCode).toBe(204);
    await within(15_000, async () => small.fresh);
    expect(infos).toContain('image index loaded');
    expect(small.overLimit).toBe(false);
    expect(small.index.size).toBe(2);
    expect((await app.inject('/metrics')).body).toMatch(/^imagelist_index_over_limit 0$/m);
    expect(errors).toHaveLength(1);
  });

  it('counts an over-limit allowlist again when the recheck interval ends, for a prune made within it', async () => {
    await db.sql`DELETE FROM images`;
    const big = ['1', '2', '3'].map((n) => n.repeat(64));
    for (const id of big) await a.app.inject({ method: 'PUT', url: '/images', payload: { id, name: 'quay.io/team/prune', tags: ['v1'] } });
    const errors: string[] = [];
    const log = { info() {}, warn() {}, error: (_: object, msg: string) => void errors.push(msg) };
    const sql = connect({ url: db.url, max: 2 });
    const small = new LiveIndex(
      new ImageSql(sql, 2000),
      { url: db.url },
      { outageGraceMs: 60_000, maxImages: 2, overLimitRecheckMs: 1500, log },
    ).start();
    closers.push(async () => {
      await small.close();
      await sql.end({ timeout: 1 });
    });
    await within(15_000, async () => small.overLimit);
    // Pruned at once, within the interval, and nothing written after.
    for (const id of big.slice(0, 2)) expect((await a.app.inject({ method: 'DELETE', url: `/images/${id}` })).statusCode).toBe(204);
    await within(15_000, async () => small.fresh);
    expect(small.overLimit).toBe(false);
    expect(small.index.size).toBe(1);
    expect(errors).toHaveLength(1);
  });

  it('loads once the allowlist fits when it shrank while a load that gave up was reading it', async () => {
    await db.sql`DELETE FROM images`;
    const big = ['1', '2', '3', '4'].map((n) => n.repeat(64));
    for (const id of big.slice(0, 3)) {
      await a.app.inject({ method: 'PUT', url: '/images', payload: { id, name: 'quay.io/team/shrink', tags: ['v1'] } });
    }
    const errors: string[] = [];
    const log = { info() {}, warn() {}, error: (_: object, msg: string) => void errors.push(msg) };
    const sql = connect({ url: db.url, max: 2 });
    /** Holds a load's first page, once read, until released: the rows are read, not yet counted. */
    class HeldPages extends ImageSql {
      hold: { held: () => void; release: Promise<void> } | undefined;
      override async loadPage(afterId: string, limit: number, put: (row: IndexRow) => void) {
        const page = await super.loadPage(afterId, limit, put);
        const hold = this.hold;
        this.hold = undefined;
        if (hold) {
          hold.held();
          await hold.release;
        }
        return page;
      }
    }
    const heard: string[] = [];
    class Listening extends LiveIndex {
      override changed(id: string) {
        heard.push(id);
        super.changed(id);
      }
    }
    const images = new HeldPages(sql, 2000);
    const small = new Listening(images, { url: db.url }, { outageGraceMs: 60_000, maxImages: 2, overLimitRecheckMs: 0, log }).start();
    closers.push(async () => {
      await small.close();
      await sql.end({ timeout: 1 });
    });
    await within(15_000, async () => small.overLimit);

    // A write makes it load again, and that load has read four images when three are deleted.
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      images.hold = { held: resolve, release: new Promise<void>((r) => (release = r)) };
    });
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: big[3]!, name: 'quay.io/team/shrink', tags: ['v1'] } });
    await held;
    for (const id of big.slice(0, 3)) expect((await a.app.inject({ method: 'DELETE', url: `/images/${id}` })).statusCode).toBe(204);
    await within(15_000, async () => big.slice(0, 3).every((id) => heard.includes(id)));
    release();

    // The held load counts four and gives up; the deletes it was too early to see make it fit.
    await within(15_000, async () => small.fresh);
    expect(small.overLimit).toBe(false);
    expect(small.index.size).toBe(1);
    expect(small.index.get(big[3]!)).toBeDefined();
    expect(errors).toHaveLength(1);
  });

  it('loads an allowlist that fits --index-max-images although the planner still estimates it larger', async () => {
    const own = await createTestDatabase();
    closers.push(() => own.close());
    await own.sql`INSERT INTO images (id, name, tags) SELECT md5(n::text) || md5((n + 7)::text), 'quay.io/team/bulk', ARRAY['v' || n] FROM generate_series(1, 50) n`;
    await own.sql`ANALYZE images`;
    await own.sql`DELETE FROM images WHERE tags <> ARRAY['v1'] AND tags <> ARRAY['v2']`; // reltuples stays 50 until the next ANALYZE
    const errors: string[] = [];
    const log = { info() {}, warn() {}, error: (_: object, msg: string) => void errors.push(msg) };
    const sql = connect({ url: own.url, max: 2 });
    const live = new LiveIndex(new ImageSql(sql, 2000), { url: own.url }, { outageGraceMs: 60_000, maxImages: 10, log }).start();
    closers.push(async () => {
      await live.close();
      await sql.end({ timeout: 1 });
    });
    await live.ready();
    expect(errors).toEqual([]);
    expect(live.index.size).toBe(2);
    const [estimate] = await own.sql<{ n: number }[]>`SELECT reltuples::int AS n FROM pg_class WHERE oid = 'images'::regclass`;
    expect(estimate?.n).toBe(50); // the estimate that alone would have made it give up
  });

  it('answers every kind of list from memory during an outage exactly as the database did', async () => {
    const own = await createTestDatabase();
    closers.push(() => own.close());
    // 1,203 images over 3 names: more than one streamed page (500), timestamps with ties
    await own.sql`INSERT INTO images (id, name, tags, created_at, updated_at)
      SELECT md5(n::text) || md5((n + 7)::text), 'quay.io/team/app' || (n % 3), ARRAY['v' || n],
        timestamptz '2024-01-01' + (n % 400) * interval '1 second', timestamptz '2024-01-01' + (n % 97) * interval '1 microsecond'
      FROM generate_series(1, 1203) n`;
    // and a name of more images than are answered from a cached rendering (images.ts): streamed
    await own.sql`INSERT INTO images (id, name, tags, created_at, updated_at)
      SELECT md5((n + 5000)::text) || md5(n::text), 'quay.io/team/big', ARRAY['v' || n],
        timestamptz '2024-01-01' + (n % 300) * interval '1 second', timestamptz '2024-01-01' + (n % 89) * interval '1 microsecond'
      FROM generate_series(1, 1100) n`;
    const target = new URL(own.url);
    const cut = await new TcpProxy(target.hostname, Number(target.port || 5432)).start();
    const url = viaProxy(own.url, cut);
    const sql = connect({ url, max: 2, connectTimeout: 1 });
    const live = new LiveIndex(new ImageSql(sql, 1000), { url }, { outageGraceMs: 60_000 }).start();
    const app = await buildApp({ sql, live, dbDeadlineMs: 1000, logger: false, defaultMetrics: false });
    closers.push(async () => {
      await app.close();
      await live.close();
      await sql.end({ timeout: 1 });
      await cut.stop();
    });
    await live.ready();
    /** Every list a client can ask for: whole, by name, and walked page by page along the Link headers. */
    const lists = async () => {
      const answers: Record<string, string> = {};
      for (const sort of ['created_at', 'updated_at', 'name', 'id']) {
        for (const query of [`sort=${sort}`, `sort=${sort}&name=quay.io/team/app1`, `sort=${sort}&name=quay.io/team/big`]) {
          const whole = await app.inject(`/images?${query}`);
          expect(whole.statusCode, query).toBe(200);
          answers[query] = whole.body;
          const pages: string[] = [];
          for (let next: string | undefined = `/images?${query}&limit=250`; next;) {
            const page: { statusCode: number; body: string; headers: { link?: unknown } } = await app.inject(next);
            expect(page.statusCode, next).toBe(200);
            pages.push(page.body);
            const link = typeof page.headers.link === 'string' ? page.headers.link : '';
            next = /^<([^>]+)>; rel="next"$/.exec(link)?.[1];
          }
          answers[`${query} in pages`] = JSON.stringify(pages.flatMap((p) => JSON.parse(p) as unknown[]));
          expect(answers[`${query} in pages`], query).toBe(JSON.stringify(JSON.parse(whole.body)));
        }
      }
      return answers;
    };
    const fromDatabase = await lists();
    expect(JSON.parse(fromDatabase['sort=id']!)).toHaveLength(2303);
    expect(JSON.parse(fromDatabase['sort=id&name=quay.io/team/big']!)).toHaveLength(1100);
    // A small name is a cached rendering (its length known); a large one is streamed, like the whole table.
    expect((await app.inject('/images?name=quay.io/team/app1')).headers['content-length']).toBeDefined();
    expect((await app.inject('/images?name=quay.io/team/big')).headers['content-length']).toBeUndefined();
    await cut.cut();
    await within(5000, async () => (await app.inject('/health/ping')).statusCode === 503 && live.servingStale);
    expect(await lists()).toEqual(fromDatabase);
  });

  it('a listener lost while the database is up is not taken for an outage', async () => {
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_B, name: 'quay.io/team/kept', tags: ['v1'] } });
    await within(1000, () => allowed(b.app, 'quay.io/team/kept:v1'));
    // A heartbeat in flight on the listener's connection when that connection is reset.
    proxy.freeze();
    await new Promise((r) => setTimeout(r, 500));
    await proxy.cut();
    proxy.thaw();
    // b's pool reaches the database directly: b must answer from it (it has no outage grace, so
    // an outage would be 503s), never believe the database gone.
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      expect(b.index.databaseReachable).toBe(true);
      expect(await allowed(b.app, 'quay.io/team/kept:v1')).toBe(true);
    }
    expect(b.index.fresh).toBe(false);
    await proxy.restore();
    await within(10_000, async () => b.index.fresh);
  });

  it('falls back to the database while its listener is cut, and catches up when it is back', async () => {
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_A, name: 'quay.io/team/app', tags: ['v2'] } });
    await within(1000, () => allowed(b.app, 'quay.io/team/app:v2'));

    await proxy.cut();
    await within(2000, async () => !b.index.fresh);
    // changes while b hears nothing: b must not answer from its stale memory
    await a.app.inject({ method: 'DELETE', url: `/images/${DIGEST_A}` });
    expect(await allowed(b.app, 'quay.io/team/app:v2')).toBe(false);
    expect((await b.app.inject(`/images/${DIGEST_A}`)).statusCode).toBe(404);
    await a.app.inject({ method: 'PUT', url: '/images', payload: { id: DIGEST_C, name: 'quay.io/team/new', tags: ['v1'] } });
    expect(await allowed(b.app, 'quay.io/team/new:v1')).toBe(true);

    await proxy.restore();
    await within(10_000, async () => b.index.fresh);
    expect(b.index.index.get(DIGEST_A)).toBeUndefined();
    expect(b.index.index.get(DIGEST_C)?.name).toBe('quay.io/team/new');
  });
});

type Hold = { held: () => void; release: Promise<void> };

/** Queues a hold; resolves with its release once the held call has come. */
function queueHold(holds: Hold[]): Promise<() => void> {
  return new Promise((resolve) => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    holds.push({ held: () => resolve(release), release: released });
  });
}

/**
 * Reads of the database whose answers are held, once they have arrived, until the test releases
 * them: a read whose snapshot came before a write and whose answer is applied after it.
 */
class HeldReads extends ImageSql {
  private readonly holds: Hold[] = [];

  /** Holds the next read-back (byIds) or load page; resolves with its release once it is held. */
  holdNext(): Promise<() => void> {
    return queueHold(this.holds);
  }

  private async held(): Promise<void> {
    const hold = this.holds.shift();
    if (!hold) return;
    hold.held();
    await hold.release;
  }

  override async byIds(ids: readonly string[]) {
    const rows = await super.byIds(ids);
    await this.held();
    return rows;
  }

  private readonly writeHolds: Hold[] = [];

  /** Holds the answer of the next write (upsert), once committed; resolves with its release once it is held. */
  holdNextWrite(): Promise<() => void> {
    return queueHold(this.writeHolds);
  }

  override async upsert(images: Parameters<ImageSql['upsert']>[0]) {
    const rows = await super.upsert(images);
    const hold = this.writeHolds.shift();
    if (hold) {
      hold.held();
      await hold.release;
    }
    return rows;
  }

  override async loadPage(afterId: string, limit: number, put: (row: IndexRow) => void) {
    const rows: IndexRow[] = [];
    const page = await super.loadPage(afterId, limit, (row) => rows.push({ ...row })); // the reader reuses its row
    await this.held();
    rows.forEach(put);
    return page;
  }
}

describe('read-your-writes on the replica that wrote', () => {
  beforeEach(({ skip }) => {
    if (db.kind === 'embedded') skip();
  });

  /** `id` is out of memory and `image` denied now, and still once the held read is let go and memory is fresh again. */
  async function deniedThrough(replica: { app: App; index: LiveIndex }, id: string, image: string, release: () => void) {
    expect(replica.index.index.get(id)).toBeUndefined();
    expect(await allowed(replica.app, image)).toBe(false);
    release();
    await within(5000, async () => replica.index.fresh);
    expect(replica.index.index.get(id)).toBeUndefined();
  }

  /** A replica whose reads of the database the test holds; started and ready unless `start` is false. */
  async function heldReplica(start = true) {
    const sql = connect({ url: db.url, max: 4 });
    const reads = new HeldReads(sql, 2000);
    const index = new LiveIndex(reads, { url: db.url }, { outageGraceMs: 0 });
    const app = await buildApp({ sql, live: index, logger: false, defaultMetrics: false });
    closers.push(async () => {
      await app.close();
      await index.close();
      await sql.end({ timeout: 1 });
    });
    if (start) {
      index.start();
      await index.ready();
    }
    return { app, index, reads };
  }

  it('never admits an image after its DELETE was answered, when an earlier read-back of it arrives late', async () => {
    const { app, index, reads } = await heldReplica();
    const image = { id: DIGEST_B, name: 'quay.io/team/late', tags: ['v1'] };
    // the PUT's own read-back reads the row, and is held before it is applied
    const readBack = reads.holdNext();
    expect((await app.inject({ method: 'PUT', url: '/images', payload: image })).statusCode).toBe(200);
    const releaseReadBack = await readBack;
    expect((await app.inject({ method: 'DELETE', url: `/images/${DIGEST_B}` })).statusCode).toBe(204);
    expect(await allowed(app, 'quay.io/team/late:v1')).toBe(false);
    // the read-back read before the DELETE is applied after it; the next read-back is held
    const next = reads.holdNext();
    releaseReadBack();
    const releaseNext = await next;
    expect(index.index.get(DIGEST_B)).toBeUndefined();
    expect(await allowed(app, 'quay.io/team/late:v1')).toBe(false);
    expect(await allowed(app, `quay.io/team/late@sha256:${DIGEST_B}`)).toBe(false);
    releaseNext();
    await within(5000, async () => index.fresh);
    expect(index.index.get(DIGEST_B)).toBeUndefined();
  });

  it('never admits an image deleted on this replica while its index loaded, from a page read before the DELETE', async () => {
    const { app, index, reads } = await heldReplica(false);
    const image = { id: DIGEST_C, name: 'quay.io/team/loading', tags: ['v1'] };
    expect((await a.app.inject({ method: 'PUT', url: '/images', payload: image })).statusCode).toBe(200);
    const page = reads.holdNext();
    index.start();
    const releasePage = await page;
    // answered from the database while the index loads
    expect((await app.inject({ method: 'DELETE', url: `/images/${DIGEST_C}` })).statusCode).toBe(204);
    const next = reads.holdNext();
    releasePage();
    const releaseNext = await next;
    await deniedThrough({ app, index }, DIGEST_C, 'quay.io/team/loading:v1', releaseNext);
  });

  it('takes an image out of memory on a DELETE that finds it already deleted elsewhere, before that is read back', async () => {
    const { app, index, reads } = await heldReplica();
    const image = { id: DIGEST_A, name: 'quay.io/team/gone', tags: ['v1'] };
    expect((await app.inject({ method: 'PUT', url: '/images', payload: image })).statusCode).toBe(200);
    await within(5000, async () => index.fresh);
    // deleted by another writer; this replica's read-back of that change is held
    const readBack = reads.holdNext();
    await db.sql`DELETE FROM images WHERE id = ${DIGEST_A}`;
    const release = await readBack;
    expect((await app.inject({ method: 'DELETE', url: `/images/${DIGEST_A}` })).statusCode).toBe(204);
    // before: still admitted here until the held read-back was applied
    await deniedThrough({ app, index }, DIGEST_A, 'quay.io/team/gone:v1', release);
  });

  it('never admits an image after its DELETE was answered, when the PUT before it is answered after it', async () => {
    const { app, index, reads } = await heldReplica();
    // the replica's writes through the held database (the app's store writes through its own)
    const store = new ImageStore(reads, index);
    const heldWrite = reads.holdNextWrite();
    const put = store.upsert({ digest: DIGEST_B, name: 'quay.io/team/order', tags: ['v1'], by: null });
    const releaseWrite = await heldWrite; // committed, its answer not yet handled
    const readBack = reads.holdNext();
    expect(await store.delete(DIGEST_B)).toBe(true);
    const releaseRead = await readBack;
    releaseWrite();
    await put;
    // before: the PUT's row, handled last, was put back into memory
    await deniedThrough({ app, index }, DIGEST_B, 'quay.io/team/order:v1', releaseRead);
  });

  it('keeps an image in memory when two of its PUTs overlap that leave it alike (a CI fan-out)', async () => {
    const { app, index, reads } = await heldReplica();
    const store = new ImageStore(reads, index);
    const image = { digest: DIGEST_C, name: 'quay.io/team/fanout', tags: ['v1'], by: null };
    const heldWrite = reads.holdNextWrite();
    const first = store.upsert(image);
    const releaseWrite = await heldWrite;
    await store.upsert(image);
    releaseWrite();
    await first;
    expect(index.index.get(DIGEST_C)).toBeDefined();
    expect(await allowed(app, 'quay.io/team/fanout:v1')).toBe(true);
  });
});
