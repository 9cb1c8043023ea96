import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONNECTION_CAP } from '@platform/http-common';
import { connectionLimit, MAX_CONNECTIONS, MIN_CONNECTIONS } from '../src/connection-room.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

const MiB = 2 ** 20;
const DEPLOYED = 384 * MiB;
/** What 1,000,000 images (50 per name, two tags each) estimate, read off the built service. */
const MILLION_IMAGES_INDEX = 96_262_510;

describe('connectionLimit', () => {
  it('is the usual 2,000 where memory is plenty (no container limit: the machine)', () => {
    expect(connectionLimit(24 * 1024 * MiB, MILLION_IMAGES_INDEX)).toBe(MAX_CONNECTIONS);
  });

  it('falls as the index grows, down to its floor', () => {
    let previous = Infinity;
    for (let index = 0; index <= 200_000_000; index += 10_000_000) {
      const limit = connectionLimit(DEPLOYED, index);
      expect(limit).toBeLessThanOrEqual(previous);
      previous = limit;
    }
    expect(connectionLimit(DEPLOYED, 0)).toBeGreaterThan(connectionLimit(DEPLOYED, MILLION_IMAGES_INDEX));
    expect(connectionLimit(DEPLOYED, DEPLOYED)).toBe(MIN_CONNECTIONS);
  });

  it('leaves the cap of connections room beside the process, the bodies and the index within the Deployment limit', () => {
    // the measured costs (connection-room.ts): 150 KB per connection, 130 MB process, 95 MB bodies
    const fits = (index: number) => Math.ceil(connectionLimit(DEPLOYED, index) * CONNECTION_CAP) * 150_000 + 130e6 + 95e6 + index;
    expect(fits(0)).toBeLessThanOrEqual(0.9 * DEPLOYED);
    expect(fits(50_000_000)).toBeLessThanOrEqual(0.9 * DEPLOYED);
    // At 1,000,000 images the limit is its floor, whose cap takes part of the allocator's slack.
    expect(connectionLimit(DEPLOYED, MILLION_IMAGES_INDEX)).toBe(MIN_CONNECTIONS);
    expect(fits(MILLION_IMAGES_INDEX)).toBeLessThanOrEqual(DEPLOYED);
  });
});

/** The service's metrics, by name (no labels). */
async function scrape(port: number): Promise<Record<string, number>> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
  return Object.fromEntries([...text.matchAll(/^([a-z_]+) (\S+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

describe.skipIf(!process.env.DATABASE_URL)('the built service keeps its connection limit to its memory (needs DATABASE_URL)', () => {
  let db: TestDatabase;
  let server: RunningServer | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
  }, 60_000);
  afterAll(async () => {
    await server?.stop('SIGKILL');
    await db?.close();
  });

  it('lowers the limit as its index grows, to what --memory-limit leaves beside it', async () => {
    const port = await freePort();
    const memory = 330;
    server = await startServer(['--listen', `127.0.0.1:${port}`, '--database-url', db.url], { IMAGELIST_MEMORY_LIMIT: String(memory) });
    /** Waits until the limit in force is the one for the index the service reports. */
    const settled = async (images: number) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const m = await scrape(port);
        const expected = connectionLimit(memory * MiB, m.imagelist_index_memory_bytes!);
        if (m.imagelist_index_images === images && m.http_connection_limit === expected) return m;
        if (Date.now() > deadline)
          throw new Error(`limit ${m.http_connection_limit}, wanted ${expected} at ${m.imagelist_index_images} images`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const empty = await settled(0);

    await db.sql`
      INSERT INTO images (id, name, tags)
      SELECT encode(sha256(i::text::bytea), 'hex'), 'registry.example.com/team-' || (i % 500) || '/app-' || (i % 2000), ARRAY['v1', 'build-' || i]
      FROM generate_series(0, 149999) AS i`;
    const grown = await settled(150_000);

    expect(grown.imagelist_index_memory_bytes).toBeGreaterThan(10_000_000);
    expect(grown.http_connection_limit).toBeLessThan(empty.http_connection_limit!);
    expect(empty.http_connection_limit).toBeLessThan(MAX_CONNECTIONS);
  }, 90_000);
});
