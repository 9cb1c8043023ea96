import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../src/store/database.js';
import type { IndexRow } from '../../src/store/image-index.js';
import { ImageSql } from '../../src/store/image-sql.js';
import { IndexCopyReader } from '../../src/store/index-copy.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const id = (n: number) => createHash('sha256').update(String(n)).digest('hex');
const TIMES = [
  '2017-10-27 16:51:06.698062+00', // as the API's example
  '1999-12-31 23:59:59.999999+00', // before PostgreSQL's epoch: a negative count
  '1970-01-01 00:00:00+00',
  '2000-01-01 00:00:00.000001+00',
  '2199-06-30 12:00:00.123456+00',
];

let db: TestDatabase;
let images: ImageSql;
/** What the driver's own rows say, the reference the COPY must match. */
let expected: IndexRow[];
/** The bytes PostgreSQL sent for a page of all rows, as the driver handed them over. */
let chunks: Buffer[];

beforeAll(async () => {
  db = await createTestDatabase();
  // ::text first: typed as timestamptz, postgres.js would send the value through a JS Date (milliseconds).
  for (let n = 0; n < 40; n++) {
    const tags = n % 4 === 0 ? [] : Array.from({ length: n % 4 }, (_, k) => `v${n}.${k}`);
    await db.sql`
      INSERT INTO images (id, name, tags, created_at, updated_at)
      VALUES (${id(n)}, ${`registry.example.com/team-${n % 3}/app-${n}`}, ${tags}, ${TIMES[n % TIMES.length]!}::text::timestamptz, ${TIMES[(n + 1) % TIMES.length]!}::text::timestamptz)`;
  }
  images = new ImageSql(db.sql, 2000);
  expected = [...(await images.byIds(Array.from({ length: 40 }, (_, n) => id(n))))].sort((a, b) => (a.id < b.id ? -1 : 1));
  const stream = await db.sql
    .unsafe(
      `COPY (SELECT id, name, CASE WHEN cardinality(tags) > 0 THEN '"' || array_to_string(tags, '","') || '"' ELSE '' END, created_at, updated_at
       FROM images ORDER BY id) TO STDOUT (FORMAT binary)`,
    )
    .readable();
  chunks = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
});
afterAll(() => db?.close());

function readAll(parts: Buffer[]): { rows: IndexRow[]; reader: IndexCopyReader } {
  const rows: IndexRow[] = [];
  const reader = new IndexCopyReader((row) => rows.push({ ...row }));
  for (const part of parts) reader.write(part);
  return { rows, reader };
}

describe("the index's COPY from a real PostgreSQL", () => {
  it('loadPage hands over the rows the driver reads, timestamps to the microsecond, page by page in id order', async () => {
    const rows: IndexRow[] = [];
    let after = '';
    for (;;) {
      const page = await images.loadPage(after, 7, (row) => rows.push({ ...row }));
      expect(page.rows).toBeLessThanOrEqual(7);
      if (page.rows < 7) break;
      after = page.lastId;
    }
    expect(rows).toEqual(expected);
    expect(rows.find((r) => r.id === id(1))!.createdUs).toBe(Date.UTC(1999, 11, 31, 23, 59, 59) * 1000 + 999_999);
  });

  it('reads the same rows however the bytes are cut into chunks', () => {
    const whole = Buffer.concat(chunks);
    expect(readAll([whole]).rows).toEqual(expected);
    expect(readAll([...whole].map((byte) => Buffer.from([byte]))).rows).toEqual(expected);
    for (const size of [2, 3, 17, 100]) {
      const parts = [];
      for (let at = 0; at < whole.length; at += size) parts.push(whole.subarray(at, at + size));
      const { rows, reader } = readAll(parts);
      expect(rows).toEqual(expected);
      expect(reader.finish()).toEqual({ rows: 40, lastId: expected[39]!.id });
    }
  });

  it('a COPY cut short, or not of these columns, fails at the end; writing never throws', () => {
    const whole = Buffer.concat(chunks);
    const cut = readAll([whole.subarray(0, whole.length - 10)]);
    expect(() => cut.reader.finish()).toThrow(/ended before its trailer/);
    const noTrailer = readAll([whole.subarray(0, whole.length - 2)]);
    expect(noTrailer.rows).toHaveLength(40);
    expect(() => noTrailer.reader.finish()).toThrow(/ended before its trailer/);
    expect(() => readAll([Buffer.from('id\tname\ttags\tcreated_at\tupdated_at\n')]).reader.finish()).toThrow(/signature/);
    const twoFields = Buffer.from(whole);
    twoFields.writeInt16BE(2, 19); // the first row's field count
    const wrong = readAll([twoFields]);
    expect(wrong.rows).toHaveLength(0);
    expect(() => wrong.reader.finish()).toThrow(/2 fields/);
    expect(() => readAll([whole, whole.subarray(19)]).reader.finish()).toThrow(/after its trailer/);
  });

  it('a page that misses its deadline puts no row from then on, though the statement runs on', async () => {
    const pool = connect({ url: db.url, max: 2 });
    const locker = connect({ url: db.url, max: 1 });
    try {
      const slow = new ImageSql(pool, 300);
      const put: IndexRow[] = [];
      let failed: unknown;
      await locker.begin(async (tx) => {
        await tx`LOCK TABLE images IN ACCESS EXCLUSIVE MODE`;
        failed = await slow.loadPage('', 100, (row) => put.push({ ...row })).catch((err: unknown) => err);
      });
      expect(failed).toMatchObject({ code: 'CLIENT_DEADLINE' });
      // The lock released, the late COPY ends and its connection is free again.
      await new Promise((r) => setTimeout(r, 200));
      expect(put).toEqual([]);
      const after: IndexRow[] = [];
      await slow.loadPage('', 100, (row) => after.push({ ...row }));
      expect(after).toEqual(expected);
    } finally {
      await Promise.all([pool.end(), locker.end()]);
    }
  });

  it('refuses a page boundary that is not an id rather than write it into the statement', async () => {
    await expect(images.loadPage("' OR true --", 10, () => {})).rejects.toThrow(/no page after/);
    await expect(images.loadPage('', 0, () => {})).rejects.toThrow(/no page after/);
  });
});
