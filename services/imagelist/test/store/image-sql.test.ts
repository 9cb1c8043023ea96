import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageSql } from '../../src/store/image-sql.js';
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

const outcome = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ value }),
    (err: { code?: string }) => ({ error: err.code }),
  );

describe('ImageSql on a real connection', () => {
  it('a statement that misses its deadline behind a slow one hands its answer to no other statement', async () => {
    // Prepared first: postgres.js queues a statement it has yet to prepare instead of sending it.
    expect(await images.allowsDigest(UNLISTED)).toBe(false);
    expect(await images.allowsNameTag('quay.io/team/never-listed', 'v1')).toBe(false);
    const slow = db.sql`SELECT pg_sleep(1)`.execute();
    const late = outcome(images.allowsDigest(LISTED)); // queued behind the sleep; misses its 300 ms
    await new Promise((r) => setTimeout(r, 800));
    const unlisted = outcome(images.allowsDigest(UNLISTED)); // queued too, answered within its deadline
    const nameTag = outcome(images.allowsNameTag('quay.io/team/never-listed', 'v1'));
    await slow;
    expect(await late).toEqual({ error: 'CLIENT_DEADLINE' });
    expect(await unlisted).toEqual({ value: false });
    expect(await nameTag).toEqual({ value: false });
    expect(await images.allowsDigest(LISTED)).toBe(true);
    expect(await images.allowsDigest(UNLISTED)).toBe(false);
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
