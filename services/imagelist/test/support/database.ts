import { randomBytes } from 'node:crypto';
import postgres, { type Sql } from 'postgres';
import { connect, startEmbedded } from '../../src/store/database.js';
import { migrate } from '../../src/store/migrate.js';

export interface TestDatabase {
  /** URL of a database of this test file's own, migrated. */
  url: string;
  sql: Sql;
  /** Where it came from: the DATABASE_URL server, a Testcontainers container, or embedded PGlite. */
  kind: 'server' | 'container' | 'embedded';
  close(): Promise<void>;
}

async function dockerAvailable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

/**
 * The one place that decides where tests get PostgreSQL: `DATABASE_URL` when set (CI: the local
 * server) — a fresh database per call on it; else a Testcontainers PostgreSQL when a Docker engine
 * answers; else embedded PGlite. With `icuLocale`, the server's database sorts text by that ICU
 * locale (a server built without ICU refuses with code 0A000).
 */
export async function createTestDatabase(opts: { max?: number; migrated?: boolean; icuLocale?: string } = {}): Promise<TestDatabase> {
  const adminUrl = process.env.DATABASE_URL;
  let url: string;
  let kind: TestDatabase['kind'];
  let dispose: () => Promise<void>;

  if (opts.icuLocale && !adminUrl) throw new Error('a database with an ICU locale needs a PostgreSQL server (DATABASE_URL)');
  if (adminUrl) {
    const name = `imagelist_test_${randomBytes(6).toString('hex')}`;
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    const locale = opts.icuLocale ? ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '${opts.icuLocale}'` : '';
    try {
      await admin.unsafe(`CREATE DATABASE ${name}${locale}`);
    } catch (err) {
      await admin.end();
      throw err;
    }
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    url = u.toString();
    kind = 'server';
    dispose = async () => {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    };
  } else if (await dockerAvailable()) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:15-alpine').start();
    url = container.getConnectionUri();
    kind = 'container';
    dispose = async () => void (await container.stop());
  } else {
    const embedded = await startEmbedded('memory://');
    url = embedded.url;
    kind = 'embedded';
    dispose = () => embedded.stop();
  }

  // The fixture's own handle seeds whole tables (100,000 rows take ~3 s on an idle host, more while
  // the suite's other files load both cores), so it is not held to the service's 5 s statement timeout.
  const sql = connect({ url, max: kind === 'embedded' ? 1 : (opts.max ?? 10), statementTimeoutMs: 120_000 });
  if (opts.migrated !== false) await migrate(sql);
  return {
    url,
    sql,
    kind,
    async close() {
      await sql.end({ timeout: 5 });
      await dispose();
    },
  };
}
