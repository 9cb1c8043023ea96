import { HttpProblem, unavailable } from '@platform/http-common';

/** Driver and network codes postgres.js reports when it cannot reach the database. */
const CONNECTION_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'CLIENT_DEADLINE', // image-sql.ts: no answer within the request's deadline
  'DRIVER_MISREAD', // image-sql.ts: an answer the driver assembled wrongly after a failed statement
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/**
 * SQLSTATEs that mean "the database is not available right now" rather than "this request is
 * wrong": connection exceptions (08), shutdown and start-up (57P0x), too many connections (53300),
 * statement timeout (57014).
 */
function isUnavailableState(code: string): boolean {
  return code.startsWith('08') || code.startsWith('57P0') || code === '53300' || code === '57014';
}

export function isDatabaseUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return CONNECTION_CODES.has(code) || isUnavailableState(code);
}

/**
 * What the process may survive when nobody handled it (listenWithGrace's `survivable`): the
 * database unreachable, or a write that Node cancelled on a TLS connection postgres.js had
 * already closed and stopped listening to.
 */
export function isLostDatabaseConnection(error: unknown): boolean {
  const { code, syscall } = (error ?? {}) as { code?: unknown; syscall?: unknown };
  return isDatabaseUnavailable(error) || (code === 'ECANCELED' && syscall === 'write');
}

/**
 * SQLSTATEs of a database that answers but cannot take this write now: read-only (a hot standby
 * the URL reaches during a failover, `default_transaction_read_only`), or out of a resource (class
 * 53: disk full, out of memory, a configured limit). The database is reachable, so these do not
 * count as an outage (reads and admission go on); the write is answered 503 naming the cause,
 * which the client may retry, not a bare 500 with a stack in the log.
 */
const WRITE_REFUSED: Record<string, string> = {
  '25006': 'The database is read-only (a standby, or default_transaction_read_only); the write was not made. Retry once it accepts writes.',
  '53100': 'The database is out of disk space; the write was not made. Retry once it has room.',
  '53200': 'The database is out of memory; the write was not made. Retry shortly.',
  // migration 005: the write reached the database, or was to commit, after its deadline
  IL001: 'The write reached the database after its deadline (a slow network?) and was refused; it was not made. Retry it.',
};

/**
 * SQLSTATEs of a database that answers but does not hold imagelist's tables (dropped, renamed, a
 * restore under way, the database re-created empty) or no longer lets its user read them: until
 * an operator puts them back, every request fails alike. Answered 503 naming the cause, not a 500
 * with a stack logged for each request. Not an outage: memory is not answered from (the feed sees
 * the table's triggers gone, change-feed.ts), so admission is denied meanwhile.
 */
const SCHEMA_MISSING: Record<string, string> = {
  '42P01': "The database does not hold imagelist's tables (dropped, or being restored?); retry once they are back.",
  '42501': "The database refuses imagelist's user access to its tables (a privilege revoked?); retry once it is granted again.",
};

/** For the app's error handler: a database outage, or a database refusing writes for now, becomes a 503 the client may retry. */
export function classifyDatabaseError(error: unknown): HttpProblem | undefined {
  if (isDatabaseUnavailable(error)) return unavailable('The database is unavailable; retry shortly.', error);
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  const refused =
    WRITE_REFUSED[code] ??
    SCHEMA_MISSING[code] ??
    (code.startsWith('53') ? 'The database is out of a resource; the write was not made. Retry shortly.' : undefined);
  return refused === undefined ? undefined : unavailable(refused, error);
}
