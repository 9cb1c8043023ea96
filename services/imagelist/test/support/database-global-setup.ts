import postgres from 'postgres';

/** The PostgreSQL server of a developer's machine and of CI's, trust auth. */
const LOCAL_SERVER = 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * Without DATABASE_URL, the tests use the local PostgreSQL server when one answers, so that
 * `pnpm test` as written runs every test wherever one runs; else support/database.ts falls back to
 * Testcontainers or embedded PGlite, and the tests that need a server say so as they are skipped.
 * Test files inherit the variable: this runs before their workers start.
 */
export default async function decideDatabase(): Promise<void> {
  if (process.env.DATABASE_URL) return;
  const sql = postgres(LOCAL_SERVER, { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    await sql`SELECT 1`;
    process.env.DATABASE_URL = LOCAL_SERVER;
    console.log(`tests: no DATABASE_URL; using the PostgreSQL server at 127.0.0.1:5432`);
  } catch (err) {
    console.log(
      `imagelist tests: no DATABASE_URL and no PostgreSQL at 127.0.0.1:5432 (${(err as Error).message}); Testcontainers or embedded PGlite`,
    );
  } finally {
    await sql.end({ timeout: 1 });
  }
}
