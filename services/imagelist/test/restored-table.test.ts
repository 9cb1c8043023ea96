import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A, DIGEST_B } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { imagelistClient } from './support/http-client.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// The allowlist's table replaced, or changed with its notify triggers disabled, as a restore of an
// older copy does (pg_restore --clean: a new table, its rows, then its triggers; --data-only
// --disable-triggers): no change is announced. The imagelist process as deployed, over HTTP.
let db: TestDatabase;
let server: RunningServer | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  await server?.stop('SIGKILL');
  server = undefined;
  await db.sql`DROP TABLE IF EXISTS images_backup`;
  await db.sql`ALTER TABLE IF EXISTS images_away RENAME TO images`;
  await db.sql`ALTER TABLE images ENABLE TRIGGER ALL`;
  await db.sql`ALTER TABLE images ENABLE ALWAYS TRIGGER images_notify_row`;
  await db.sql`ALTER TABLE images ENABLE ALWAYS TRIGGER images_notify_truncate`;
  await db.sql`DELETE FROM images`;
});
afterAll(async () => {
  await db?.close();
});

const NAME = 'quay.io/team/restored';

async function imagelist() {
  const port = await freePort();
  server = await startServer(['--listen', `127.0.0.1:${port}`, '--db-timeout', '1'], { DATABASE_URL: db.url });
  const il = imagelistClient(`http://127.0.0.1:${port}`);
  const put = (id: string) =>
    il.call('/images', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id, name: NAME, tags: [id === DIGEST_A ? 'a' : 'b'] }),
    });
  return { il, put };
}

/** Until `check` holds, for at most `ms`; the last failure otherwise. */
async function eventually(check: () => Promise<void>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** imagelist with image B listed and admitted. */
async function imagelistWithB() {
  const running = await imagelist();
  expect((await running.put(DIGEST_B)).status).toBe(200);
  await eventually(async () => expect((await running.il.review(`${NAME}:b`)).allowed).toBe(true), 2000);
  return running;
}

/** Image B, deleted in SQL just now, is denied and not found within 2 s. */
async function deniedWithin2s(il: ReturnType<typeof imagelistClient>): Promise<void> {
  const deletedAt = Date.now();
  await eventually(async () => {
    expect((await il.review(`${NAME}:b`)).allowed, `${Date.now() - deletedAt} ms after the DELETE`).toBe(false);
    expect((await il.call(`/images/${DIGEST_B}`)).status).toBe(404);
  }, 2000);
}

describe('a table restored or changed without notifications', () => {
  it('after a restore of an older copy, answers what the restored table holds within 2 s', async () => {
    const { il, put } = await imagelist();
    expect((await put(DIGEST_A)).status).toBe(200);
    await db.sql`CREATE TABLE images_backup AS TABLE images`; // the dump
    expect((await put(DIGEST_B)).status).toBe(200);
    expect((await il.call(`/images/${DIGEST_A}`, { method: 'DELETE' })).status).toBe(204);
    await eventually(async () => {
      expect((await il.review(`${NAME}:b`)).allowed).toBe(true);
      expect((await il.review(`${NAME}:a`)).allowed).toBe(false);
    }, 2000);

    // what pg_restore --clean does: the table dropped, created again, its rows, then its triggers
    await db.sql.begin(async (tx) => {
      await tx`CREATE TABLE images_restored (LIKE images INCLUDING ALL)`;
      await tx`INSERT INTO images_restored SELECT * FROM images_backup`;
      await tx`DROP TABLE images`;
      await tx`ALTER TABLE images_restored RENAME TO images`;
    });
    await db.sql.unsafe(`
      CREATE TRIGGER images_notify_row AFTER INSERT OR UPDATE OR DELETE ON images
        FOR EACH ROW EXECUTE FUNCTION images_notify_row();
      CREATE TRIGGER images_notify_truncate AFTER TRUNCATE ON images
        FOR EACH STATEMENT EXECUTE FUNCTION images_notify_truncate();`);
    const restoredAt = Date.now();

    await eventually(async () => {
      expect((await il.review(`${NAME}:b`)).allowed, `${Date.now() - restoredAt} ms after the restore`).toBe(false);
      expect((await il.call(`/images/${DIGEST_B}`)).status).toBe(404);
      expect((await il.review(`${NAME}:a`)).allowed).toBe(true);
      expect((await il.call(`/images/${DIGEST_A}`)).status).toBe(200);
    }, 2000);
    // and it stays so, answered from memory again
    await new Promise((r) => setTimeout(r, 1000));
    expect((await il.review(`${NAME}:b`)).allowed).toBe(false);
    expect((await il.review(`${NAME}:a`)).allowed).toBe(true);
    expect((await il.call('/metrics')).text).toMatch(/^imagelist_index_fresh 1$/m);
    expect(server!.output()).toContain('were replaced (a restore?)');
  }, 30_000);

  it('with its notify triggers disabled, a row deleted in SQL is denied within 2 s', async () => {
    const { il } = await imagelistWithB();

    await db.sql`ALTER TABLE images DISABLE TRIGGER images_notify_row`;
    await db.sql`DELETE FROM images WHERE id = ${DIGEST_B}`;
    await deniedWithin2s(il);
    // the line comes through the process's stdout pipe, which may be read after the answers
    await eventually(async () => expect(server!.output()).toContain('changes to the images table are not announced'), 2000);
  }, 30_000);

  it('rows changed with its triggers disabled and enabled again in one transaction are read within 2 s', async () => {
    const { il } = await imagelistWithB();

    // pg_restore --single-transaction --disable-triggers: the triggers are as they were once it commits
    await db.sql.begin(async (tx) => {
      await tx`ALTER TABLE images DISABLE TRIGGER ALL`;
      await tx`DELETE FROM images WHERE id = ${DIGEST_B}`;
      await tx`ALTER TABLE images ENABLE TRIGGER ALL`;
    });
    await deniedWithin2s(il);
  }, 30_000);

  it('a row deleted by a session that skips ordinary triggers (session_replication_role = replica) is denied within 2 s', async () => {
    const { il } = await imagelistWithB();

    // as a logical replication apply worker writes, or an operator skipping triggers
    await db.sql.begin(async (tx) => {
      await tx`SET LOCAL session_replication_role = replica`;
      await tx`DELETE FROM images WHERE id = ${DIGEST_B}`;
    });
    await deniedWithin2s(il);
  }, 30_000);

  it('a replica-role DELETE after a data-only restore with --disable-triggers (ENABLE TRIGGER ALL) is denied within 2 s', async () => {
    const { il } = await imagelistWithB();

    // what pg_restore --data-only --disable-triggers runs around the rows: back to origin only
    await db.sql`ALTER TABLE images DISABLE TRIGGER ALL`;
    await db.sql`ALTER TABLE images ENABLE TRIGGER ALL`;
    await eventually(async () => {
      const triggers = await db.sql<{ tgenabled: string }[]>`
        SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'images'::regclass AND tgname LIKE 'images_notify_%'`;
      expect(triggers.map((t) => t.tgenabled)).toEqual(['A', 'A']);
    }, 2000);
    await db.sql.begin(async (tx) => {
      await tx`SET LOCAL session_replication_role = replica`;
      await tx`DELETE FROM images WHERE id = ${DIGEST_B}`;
    });
    await deniedWithin2s(il);
  }, 30_000);

  it('while its table is missing, says so once, not at every retry, and answers again once it is back', async () => {
    const { il, put } = await imagelistWithB();

    await db.sql`ALTER TABLE images RENAME TO images_away`;
    await new Promise((r) => setTimeout(r, 3000)); // a dozen retries
    const failures = server!
      .output()
      .split('\n')
      .filter((line) => line.includes('image index refresh failed'));
    expect(failures).toHaveLength(1);
    expect(failures[0]).toContain('42P01');
    expect((await il.review(`${NAME}:b`)).allowed).not.toBe(true);
    // Answered 503 naming the cause (a 500 logged a stack for every request), and nothing written.
    for (const answer of [await put(DIGEST_A), await il.call(`/images/${DIGEST_B}`)]) {
      expect(answer.status).toBe(503);
      expect(JSON.parse(answer.text).detail).toMatch(/does not hold imagelist's tables/);
    }
    expect(server!.output()).not.toMatch(/"level":50/);

    await db.sql`ALTER TABLE images_away RENAME TO images`;
    await eventually(async () => {
      expect((await il.review(`${NAME}:b`)).allowed).toBe(true);
      expect(server!.output()).toContain('image index refreshed again');
    }, 2000);
  }, 30_000);
});
