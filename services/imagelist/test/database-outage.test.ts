import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A } from './support/app.js';
import { PrivatePostgres, privatePostgresUnavailable } from './support/private-postgres.js';
import { imagelistClient } from './support/http-client.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';
import { TcpProxy, viaProxy } from './support/tcp-proxy.js';

// The imagelist process, as deployed, against a PostgreSQL server of this file's own that the
// tests crash, restart and freeze. Every figure asserted here is also in the README.
const unavailable = privatePostgresUnavailable();
let pg: PrivatePostgres;
let server: RunningServer | undefined;

beforeAll(async () => {
  if (unavailable) return;
  pg = await new PrivatePostgres().start();
}, 60_000);
afterEach(async () => {
  await server?.stop('SIGKILL');
  server = undefined;
  await pg?.up().catch(() => {}); // a failed test may have left it down; running already is fine
});
afterAll(async () => {
  await pg?.stop();
});

/** Starts imagelist on `url`; returns a client for it. */
async function imagelist(url: string, flags: string[]) {
  const port = await freePort();
  server = await startServer(['--listen', `127.0.0.1:${port}`, '--log-level', 'info', '--db-timeout', '1', ...flags], {
    DATABASE_URL: url,
  });
  const { call: timed, review } = imagelistClient(`http://127.0.0.1:${port}`);
  const put = (id: string, tags: string[]) =>
    timed('/images', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id, name: 'quay.io/team/app', tags }),
    });
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec((await timed('/metrics')).text)?.[1]);
  const until = async (check: () => Promise<boolean>, ms: number) => {
    const started = Date.now();
    while (!(await check())) {
      if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return Date.now() - started;
  };
  return { timed, review, put, metric, until };
}

const allowed = (res: { text: string }) => JSON.parse(res.text).status.allowed as boolean;
const OTHER = 'c'.repeat(64);

describe.skipIf(unavailable)(`database outage, real process (${unavailable ?? 'private PostgreSQL'})`, () => {
  it('answers from the last exact state through a crash, takes no writes, and is current again within 2 s of the restart at 100,000 images', async () => {
    const app = await imagelist(pg.url, ['--outage-grace', '60']);
    expect((await app.put(DIGEST_A, ['v1'])).status).toBe(200);
    const seed = postgres(pg.url, { max: 1, onnotice: () => {} });
    await seed`INSERT INTO images (id, name, tags)
      SELECT lpad(to_hex(n), 64, '0'), 'quay.io/bulk/app-' || (n % 2000), ARRAY['v' || n] FROM generate_series(1, 100000) n`;
    await seed.end();
    await app.until(
      async () => (await app.metric('imagelist_index_images')) === 100_001 && (await app.metric('imagelist_index_fresh')) === 1,
      10_000,
    );

    const before = await app.timed('/images');
    // the start's load, and the reload that applied the bulk insert (a burst of changes)
    const loadsBefore = server!.output().match(/image index loaded/g)!.length;
    await pg.down('immediate');
    // The whole list, rendered from memory as it is sent, in the database's order.
    const list = await app.timed('/images');
    expect(list.status).toBe(200);
    expect(list.text).toBe(before.text);
    const during = [
      await app.review('quay.io/team/app:v1'),
      await app.review('quay.io/team/app:v2'),
      await app.timed(`/images/${DIGEST_A}`),
      await app.timed('/health/ready'),
    ];
    expect(during.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(allowed(during[0]!)).toBe(true);
    expect(allowed(during[1]!)).toBe(false); // still fail-closed for what is not listed
    const write = await app.put(OTHER, ['x']);
    expect(write.status).toBe(503);
    expect((await app.timed('/health/ping')).status).toBe(503);
    expect(await app.metric('imagelist_database_up')).toBe(0);
    expect(await app.metric('imagelist_index_serving_stale')).toBe(1);
    expect(await app.metric('imagelist_index_state_age_seconds')).toBeLessThan(60);
    // nothing waits longer than the database timeout (1 s), and once the outage is known, writes fail at once
    for (const r of [...during, write]) expect(r.ms).toBeLessThan(1500);
    expect((await app.put(OTHER, ['x'])).ms).toBeLessThan(100);

    await pg.up();
    const back = Date.now();
    await app.until(async () => (await app.timed('/health/ping')).status === 200 && (await app.put(OTHER, ['y'])).status === 200, 1000);
    await app.until(async () => (await app.metric('imagelist_index_fresh')) === 1, 2000 - (Date.now() - back));
    expect(await app.metric('imagelist_index_images')).toBe(100_002);
    expect(await app.metric('imagelist_index_serving_stale')).toBe(0);

    const log = server!.output();
    expect(log).toMatch(/database unreachable; answering from the last exact in-memory state/);
    expect(log).toMatch(/database reachable again/);
    // one reconnect loop: one reconnect and one full reload after the outage, not one per failed attempt
    expect(log.match(/change feed listening again/g)).toHaveLength(1);
    expect(log.match(/image index loaded/g)).toHaveLength(loadsBefore + 1);
    const seed2 = postgres(pg.url, { max: 1, onnotice: () => {} });
    await seed2`DELETE FROM images WHERE name LIKE 'quay.io/bulk/%'`;
    await seed2.end();
  }, 60_000);

  it('with --outage-grace 0 fails closed at once, and stops being ready', async () => {
    const app = await imagelist(pg.url, ['--outage-grace', '0']);
    expect((await app.put(DIGEST_A, ['v1'])).status).toBe(200);
    await app.until(async () => (await app.metric('imagelist_index_fresh')) === 1, 5000);
    await pg.down('fast');
    await app.until(async () => (await app.metric('imagelist_database_up')) === 0, 2000);
    const review = await app.review('quay.io/team/app:v1');
    expect(review.status).toBe(503);
    expect(review.ms).toBeLessThan(100);
    expect((await app.timed('/health/ready')).status).toBe(503);
    await pg.up();
    await app.until(async () => (await app.review('quay.io/team/app:v1')).status === 200, 1000);
  }, 30_000);

  it('fails closed when the grace runs out', async () => {
    const app = await imagelist(pg.url, ['--outage-grace', '2']);
    expect((await app.put(DIGEST_A, ['v1'])).status).toBe(200);
    await app.until(async () => (await app.metric('imagelist_index_fresh')) === 1, 5000);
    await pg.down('immediate');
    expect((await app.review('quay.io/team/app:v1')).status).toBe(200);
    await app.until(async () => (await app.review('quay.io/team/app:v1')).status === 503, 3000);
    await app.until(async () => /older than the outage grace; admission fails closed/.test(server!.output()), 1000);
    await pg.up();
  }, 30_000);

  it('answers within the database timeout when the database hangs instead of refusing', async () => {
    const target = new URL(pg.url);
    const proxy = await new TcpProxy(target.hostname, Number(target.port)).start();
    try {
      const app = await imagelist(viaProxy(pg.url, proxy), ['--outage-grace', '60']);
      expect((await app.put(DIGEST_A, ['v1'])).status).toBe(200);
      await app.until(async () => (await app.metric('imagelist_index_fresh')) === 1, 5000);
      proxy.freeze();
      const started = Date.now();
      const answers = await Promise.all([
        app.review('quay.io/team/app:v1'),
        app.timed(`/images/${DIGEST_A}`),
        app.put(OTHER, ['z']),
        app.timed('/images?name=quay.io/team/app'),
        app.review('quay.io/team/app:v1'),
      ]);
      for (const a of answers) expect(a.ms).toBeLessThan(1500);
      expect(answers.map((a) => a.status)).toEqual([200, 200, 503, 200, 200]);
      expect(Date.now() - started).toBeLessThan(2000);
      proxy.thaw();
      await app.until(async () => (await app.put(OTHER, ['z'])).status === 200, 5000);
    } finally {
      await proxy.stop();
    }
  }, 30_000);
});
