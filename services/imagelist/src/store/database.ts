import postgres, { type Sql } from 'postgres';
import type { DatabaseTarget } from './database-tls.js';
import { unansweredSocket } from './unanswered-socket.js';

/** `url` and `ssl`: from databaseTarget (database-tls.ts) when the URL may carry sslrootcert. */
export interface DatabaseOptions extends DatabaseTarget {
  /** Pool size; the embedded database takes one connection. */
  max?: number;
  /** Seconds to wait for a connection before the request fails with 503. */
  connectTimeout?: number;
  /** Milliseconds a statement may run before the server cancels it. */
  statementTimeoutMs?: number;
  /**
   * Milliseconds a connection may wait for any answer to a statement before it is destroyed as
   * dead (a host gone without a FIN or RST); default statement_timeout + 10 s. A function for a
   * connection whose statements may legitimately run longer at times, read as each is sent
   * (migrations: MigrationWatch, migrate.ts).
   */
  unansweredMs?: number | (() => number);
}

/** A postgres.js pool that fails fast when the database is away and reconnects by itself. */
export function connect(opts: DatabaseOptions): Sql {
  const statementTimeoutMs = opts.statementTimeoutMs ?? 5000;
  const unansweredMs = opts.unansweredMs ?? statementTimeoutMs + 10_000;
  return postgres(opts.url, {
    // postgres.js takes a socket factory but does not declare it. Ours name the server for TLS by
    // its IP address too (host-socket.ts).
    ...({ socket: unansweredSocket(unansweredMs) } as object),
    // run by postgres.js's tls.connect, on our socket too
    ...(opts.ssl ? { ssl: opts.ssl } : {}),
    max: opts.max ?? 10,
    connect_timeout: opts.connectTimeout ?? 5,
    idle_timeout: 60,
    // postgres.js backs off up to 20 s between reconnects after repeated failures; a database that
    // is back must be used within a second, so retry every 50-250 ms instead.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 0.25),
    max_lifetime: 30 * 60,
    onnotice: () => {},
    connection: {
      application_name: 'imagelist',
      statement_timeout: statementTimeoutMs,
    },
  });
}

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

/**
 * PGlite, PostgreSQL compiled to WebAssembly, served on a loopback socket so the same postgres.js
 * code path runs against it. For local use and demos: it serves one connection at a time.
 * `dataDir` persists the data; `memory://` keeps it in memory.
 */
export async function startEmbedded(dataDir: string): Promise<EmbeddedDatabase> {
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const said: string[] = [];
  let db: InstanceType<typeof PGlite>;
  try {
    db = await PGlite.create(dataDir, {
      onStderr: (line) => {
        said.push(line.replace(/^\S+ \S+ \S+ \[\d+\] /, ''));
        if (said.length > 50) said.shift();
        return false;
      },
    });
  } catch (err) {
    // PGlite's own message says nothing of the cause ('PGlite failed to initialize properly',
    // 'Aborted()'): PostgreSQL's last words, which it does not show, do.
    const words = lastWords(said);
    if (!words) throw err;
    // eslint-disable-next-line preserve-caught-error -- its message ('Aborted(). Build with -sASSERTIONS for more info.') would follow PostgreSQL's on the fatal line
    throw new Error(`the embedded database in ${dataDir} did not start: ${words}`);
  }
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0 });
  await server.start();
  return {
    url: `postgres://postgres@${server.getServerConn()}/postgres`,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}

/** The FATAL or PANIC PostgreSQL wrote, with its DETAIL and HINT, and for a bad configuration file the LOG lines naming the settings. */
function lastWords(lines: string[]): string {
  const kept = lines.filter((l) => l !== 'Aborted()');
  const fatal = kept.findIndex((l) => /^(FATAL|PANIC):/.test(l));
  if (fatal < 0) return kept.slice(-3).join('; ');
  let before = fatal;
  if (/configuration file/.test(kept[fatal] ?? '')) while (kept[before - 1]?.startsWith('LOG:')) before--;
  let end = fatal + 1;
  while (end < kept.length && /^(DETAIL|HINT):/.test(kept[end] ?? '')) end++;
  return kept
    .slice(before, end)
    .map((l) => l.replace(/\s+/g, ' '))
    .join('; ');
}
