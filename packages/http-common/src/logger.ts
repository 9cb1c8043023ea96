import type { FastifyRequest } from 'fastify';
import { pino, type Logger, type LoggerOptions } from 'pino';

/** Paths pino blanks out wherever they appear in a log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-auth-token"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-auth-token"]',
  // `*.x` matches one level down only: the top-level field needs its own path.
  'token',
  '*.token',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'databaseUrl',
  '*.databaseUrl',
  'dbPassword',
  '*.dbPassword',
  'config.account.secret',
  'config.account.akid',
  'config.token',
];

/** Query parameters whose values are secrets (RFC 6750's `access_token`, a presigned URL's signature). */
const SECRET_PARAM = /token|secret|password|passwd|signature|credential|key/i;

/** The URL with the values of its secret-named query parameters blanked out. */
function withoutSecrets(url: string): string {
  const query = url.indexOf('?');
  if (query < 0) return url;
  const pairs = url
    .slice(query + 1)
    .split('&')
    .map((pair) => {
      const name = pair.split('=', 1)[0]!;
      return SECRET_PARAM.test(name) ? `${name}=[redacted]` : pair;
    });
  return `${url.slice(0, query + 1)}${pairs.join('&')}`;
}

/**
 * A request in a log line, as Fastify's own serializer has it, its URL without secrets: a client
 * may send its token as `?access_token=`, which the URL of a `slow request` line would carry.
 */
function request(req: FastifyRequest) {
  return { method: req.method, url: withoutSecrets(req.url), host: req.host, remoteAddress: req.ip, remotePort: req.socket?.remotePort };
}

export function loggerOptions(level: string, opts: { pretty?: boolean } = {}): LoggerOptions {
  const pretty = opts.pretty ?? Boolean(process.stdout.isTTY);
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: { req: request },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } } } : {}),
  };
}

/** A pino logger for a service's entry point, shared by the app and what starts before it. */
export type { Logger };

export function createLogger(level: string, opts: { pretty?: boolean } = {}): Logger {
  return pino(loggerOptions(level, opts));
}
