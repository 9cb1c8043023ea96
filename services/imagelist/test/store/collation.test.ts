import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageIndex } from '../../src/store/image-index.js';
import { ImageSql } from '../../src/store/image-sql.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/**
 * Lists sorted by name come from PostgreSQL, and from the in-memory index while the database is
 * unreachable; a client paging through one may get each page from another. Many clusters' databases
 * sort text by a language's rules (en_US, here ICU's en-US), which put `_` before `-` and `/`, and
 * `B` after `a`; the index sorts by code point. This database is created with en-US so the two differ
 * unless the schema pins the order.
 */
// Valid names (lowercase paths; a registry domain may have capitals) whose order differs by the rules.
const NAMES = [
  'quay.io/a-b/x',
  'quay.io/a.b/x',
  'quay.io/a_b/x',
  'quay.io/a/x',
  'quay.io/ab/x',
  'Quay.io/ab/x',
  'b.io/x',
  'quay.io:5000/x',
];
let db: TestDatabase | undefined;
let noIcu = false;

beforeAll(async () => {
  if (!process.env.DATABASE_URL) return;
  try {
    db = await createTestDatabase({ max: 1, icuLocale: 'en-US' });
  } catch (err) {
    if ((err as { code?: string }).code !== '0A000') throw err;
    noIcu = true; // ICU is not supported in this build
    return;
  }
  let n = 0;
  for (const name of NAMES) {
    for (let k = 0; k < 3; k++) {
      const id = createHash('sha256').update(String(n++)).digest('hex');
      await db.sql`INSERT INTO images (id, name, tags) VALUES (${id}, ${name}, ${[`v${k}`]})`;
    }
  }
});

afterAll(() => db?.close());

describe.skipIf(!process.env.DATABASE_URL)('on a database whose collation is en-US (needs a PostgreSQL server: DATABASE_URL)', () => {
  it('the database and the in-memory index list by name and by id in one order, page by page', async (ctx) => {
    if (noIcu) ctx.skip('the PostgreSQL server has no ICU collations');
    const images = new ImageSql(db!.sql, 5000);
    const index = new ImageIndex();
    await images.loadPage('', 1000, (row) => index.putRow(row));
    for (const sort of ['name', 'id'] as const) {
      const fromMemory = Array.from(index.ordered(sort), (slot) => index.cursorOf(slot, sort)![1]);
      const fromDatabase = (await images.page({ sort, limit: 1000 })).map((r) => r.id);
      expect(fromDatabase, sort).toEqual(fromMemory);
      // A page the index answered, continued by the database from its last cursor, and the other way round.
      const paged: string[] = [];
      let after: [string, string] | undefined;
      for (let page = 0; paged.length < fromMemory.length; page++) {
        if (page % 2 === 0) {
          const slots = Array.from(index.ordered(sort)).slice(paged.length, paged.length + 5);
          paged.push(...slots.map((slot) => index.cursorOf(slot, sort)![1]));
          after = index.cursorOf(slots[slots.length - 1]!, sort);
        } else {
          const rows = await images.page({ sort, after, limit: 5 });
          paged.push(...rows.map((r) => r.id));
          const last = rows[rows.length - 1]!;
          after = [sort === 'name' ? last.name : last.id, last.id];
        }
      }
      expect(paged, `${sort}, pages from each in turn`).toEqual(fromMemory);
    }
  });
});
