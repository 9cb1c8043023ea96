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

export function loggerOptions(level: string, opts: { pretty?: boolean } = {}): LoggerOptions {
  const pretty = opts.pretty ?? Boolean(process.stdout.isTTY);
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } } } : {}),
  };
}

/** A pino logger for a service's entry point, shared by the app and what starts before it. */
export type { Logger };

export function createLogger(level: string, opts: { pretty?: boolean } = {}): Logger {
  return pino(loggerOptions(level, opts));
}
