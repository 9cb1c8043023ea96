import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeName, parseReference } from '../../src/reference.js';
import { connect } from '../../src/store/database.js';
import { ImageSql } from '../../src/store/image-sql.js';
import type { IndexRow } from '../../src/store/image-index.js';
import { tagsJson } from '../../src/store/image-json.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

// One connection, so that statements queue behind each other on it, as they do on every
// connection of a pool whose connections are all busy (postgres.js pipelines them).
const LISTED = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);
const UNLISTED = 'e'.repeat(64);
let db: TestDatabase;
let images: ImageSql;

beforeAll(async () => {
  db = await createTestDatabase({ max: 1 });
  await db.sql`INSERT INTO images (id, name, tags) VALUES (${LISTED}, 'quay.io/team/app', '{v1}'), (${OTHER}, 'quay.io/team/app', '{v2}')`;
  images = new ImageSql(db.sql, 300);
});
afterAll(() => db?.close());

const ref = (image: string) => parseReference(image)!;
const allows = async (images: ImageSql, ...refs: string[]) => images.allowedAmong(refs.map(ref));
const byDigest = (hex: string) => ref(`quay.io/team/app@sha256:${hex}`);

const outcome = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ value }),
    (err: { code?: string }) => ({ error: err.code }),
  );

describe('ImageSql on a real connection', () => {
  it('a statement that misses its deadline behind a slow one hands its answer to no other statement', async () => {
    // Prepared first: postgres.js queues a statement it has yet to prepare instead of sending it.
    expect(await images.allowedAmong([byDigest(UNLISTED)])).toEqual([false]);
    const slow = db.sql`SELECT pg_sleep(1)`.execute();
    const late = outcome(images.allowedAmong([byDigest(LISTED)])); // queued behind the sleep; misses its 300 ms
    await new Promise((r) => setTimeout(r, 800));
    const unlisted = outcome(images.allowedAmong([byDigest(UNLISTED)])); // queued too, answered within its deadline
    const nameTag = outcome(allows(images, 'quay.io/team/never-listed:v1'));
    await slow;
    expect(await late).toEqual({ error: 'CLIENT_DEADLINE' });
    expect(await unlisted).toEqual({ value: [false] });
    expect(await nameTag).toEqual({ value: [false] });
    expect(await images.allowedAmong([byDigest(LISTED), byDigest(UNLISTED)])).toEqual([true, false]);
  });

  it('answers a whole review in one statement: by digest, or by name in any spelling and tag', async () => {
    await db.sql`INSERT INTO images (id, name, tags) VALUES (${'c'.repeat(64)}, 'library/nginx', '{1.25}') ON CONFLICT DO NOTHING`;
    expect(
      await allows(
        images,
        `x.io/y@sha256:${OTHER}`,
        'quay.io/team/app:v1',
        'quay.io/team/app:v3',
        'nginx:1.25',
        'docker.io/library/nginx:1.26',
        'nginx',
      ),
    ).toEqual([true, true, false, true, false, false]);
    expect(await images.allowedAmong([])).toEqual([]);
  });

  it('finds a name only under spellings that name the same repository: a Docker Hub path is never another registry', async () => {
    // Stored spellings, each normalising as a container runtime would; the in-memory index matches
    // exactly the stored names that normalise to the reference's name, and so must the database.
    const stored = [
      'quay.io/foo/app',
      'localhost/app',
      'registry:5000/app',
      'Mirror/app',
      'library/redis',
      'index.docker.io/team/api',
      'quay.io',
    ];
    for (const [i, name] of stored.entries())
      await db.sql`INSERT INTO images (id, name, tags) VALUES (${String(i + 1).padStart(64, 'd')}, ${name}, '{v1}')`;
    const asked = [
      ...stored,
      ...stored.flatMap((name) => [`docker.io/${name}`, `index.docker.io/${name}`, `docker.io/library/${name}`]),
      'redis',
      'docker.io/redis',
      'team/api',
      'docker.io/team/api',
      'library/quay.io',
    ].filter((name) => parseReference(`${name}:v1`) !== undefined);
    const expected = asked.map((name) => stored.some((s) => normalizeName(s) === parseReference(`${name}:v1`)!.name));
    expect(await allows(images, ...asked.map((name) => `${name}:v1`))).toEqual(expected);
    // the cases that admitted another registry's image through its Docker Hub spelling
    expect(await allows(images, 'docker.io/quay.io/foo/app:v1', 'index.docker.io/localhost/app:v1', 'quay.io/foo/app:v1')).toEqual([
      false,
      false,
      true,
    ]);
    await db.sql`DELETE FROM images WHERE name = ANY(${stored})`;
  });

  it("hands the index each image's tags as the inside of their JSON array, as the API renders them", async () => {
    const ids = ['1', '2', '3'].map((c) => c.repeat(64));
    const tags = [[], ['v1'], ['v1', 'build-7', 'latest']];
    for (const [i, id] of ids.entries()) await db.sql`INSERT INTO images (id, name, tags) VALUES (${id}, 'quay.io/team/tags', ${tags[i]!})`;
    const loaded: IndexRow[] = [];
    await images.loadPage('', 1000, (r) => ids.includes(r.id) && loaded.push({ ...r }));
    const fed = await images.byIds(ids);
    for (const rows of [loaded, fed]) {
      expect(Object.fromEntries(rows.map((r) => [r.id, r.tagsJson]))).toEqual(
        Object.fromEntries(ids.map((id, i) => [id, tagsJson(tags[i]!)])),
      );
    }
    const [stored] = await db.sql<{ tags: string[] }[]>`SELECT tags FROM images WHERE id = ${ids[2]!}`;
    expect(JSON.parse(`[${fed.find((r) => r.id === ids[2])!.tagsJson}]`)).toEqual(stored!.tags);
    await db.sql`DELETE FROM images WHERE id = ANY(${ids})`;
  });

  it('after a statement that failed part-way through its rows, the next answer is whole or an error, never padded', async () => {
    await images.byIds([LISTED, OTHER]); // prepared, so that next time it is sent at once
    // Three rows, then division by zero: the server has sent rows before the error.
    const failed = await outcome(db.sql`SELECT i, 1 / (4 - i) AS boom FROM generate_series(1, 10) AS i`.execute());
    expect(failed).toMatchObject({ error: '22012' });
    const next = await outcome(images.byIds([LISTED, OTHER]));
    if ('value' in next) expect([...next.value].map((r) => r?.id).sort()).toEqual([LISTED, OTHER]);
    else expect(next.error).toBe('DRIVER_MISREAD');
    const again = await images.byIds([LISTED, OTHER]);
    expect(again.map((r) => r.id).sort()).toEqual([LISTED, OTHER]);
  });
});

describe.skipIf(!process.env.DATABASE_URL)('reads without a login, on a pool (needs a PostgreSQL server: DATABASE_URL)', () => {
  /** imagelist's statements waiting on a lock. */
  const waitingOnLock = async () =>
    (
      await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name = 'imagelist'`
    )[0]!.n;
  const lookUp = (reads: ImageSql) => outcome(reads.allowedAmong([byDigest(LISTED)]));

  /**
   * Runs `during` with reads on a pool of 4 (so two turns) and a 300 ms deadline while another
   * connection holds the images table locked; the reads answer before and after the lock.
   */
  async function whileLocked(during: (reads: ImageSql) => Promise<void>): Promise<void> {
    const pool = connect({ url: db.url, max: 4 });
    const locker = connect({ url: db.url, max: 1 });
    try {
      const reads = new ImageSql(pool, 300);
      expect(await lookUp(reads)).toEqual({ value: [true] });
      await locker.begin(async (tx) => {
        await tx`LOCK TABLE images IN ACCESS EXCLUSIVE MODE`;
        await during(reads);
      });
      // The lock released, the late statements finish and free their turns.
      expect(await lookUp(reads)).toEqual({ value: [true] });
    } finally {
      await Promise.all([pool.end(), locker.end()]);
    }
  }

  it('take at most half the pool at once, and one whose deadline passed while it waited is never sent', () =>
    whileLocked(async (reads) => {
      const answers = await Promise.all(Array.from({ length: 20 }, () => lookUp(reads)));
      expect(answers).toEqual(Array.from({ length: 20 }, () => ({ error: 'CLIENT_DEADLINE' })));
      await new Promise((r) => setTimeout(r, 300)); // a queued read sent late would be waiting by now
      expect(await waitingOnLock()).toBe(2);
    }));

  it('keep their turn while a late statement still runs, so reads that come after the deadline are not sent', () =>
    whileLocked(async (reads) => {
      // Two take both turns and miss their deadline; their statements wait on the lock.
      expect(await Promise.all([1, 2].map(() => lookUp(reads)))).toEqual([1, 2].map(() => ({ error: 'CLIENT_DEADLINE' })));
      // Later reads, each with a whole deadline of its own, find both turns still taken.
      expect(await Promise.all([1, 2, 3].map(() => lookUp(reads)))).toEqual([1, 2, 3].map(() => ({ error: 'CLIENT_DEADLINE' })));
      expect(await waitingOnLock()).toBe(2);
    }));
});
