import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
const LEVELS: Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];
type Bindings = Record<string, unknown>;
type LevelAware = FastifyBaseLogger & { isLevelEnabled?(level: string): boolean };

/**
 * A request's logger that becomes pino's child logger only when it writes a line.
 *
 * Fastify gives every request a child of the app's logger, and pino builds a child eagerly: it
 * serialises the bindings (`reqId`) through the redaction paths. At `warn`, or for the many
 * requests that log nothing of their own, that work is thrown away. Lines that are written go
 * through the same pino child, so they are exactly as before.
 */
class RequestLogger {
  #child: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: LevelAware,
    private readonly bindings: Bindings,
  ) {}

  private get logger(): FastifyBaseLogger {
    return (this.#child ??= this.parent.child(this.bindings));
  }

  get level(): string {
    return (this.#child ?? this.parent).level;
  }

  set level(level: string) {
    this.logger.level = level;
  }

  child(bindings: Bindings, options?: object): FastifyBaseLogger {
    return this.logger.child(bindings, options);
  }

  silent(): void {}
}

interface RequestLogger extends Record<Level, (...args: unknown[]) => void> {}

for (const level of LEVELS) {
  RequestLogger.prototype[level] = function log(this: RequestLogger, ...args: unknown[]) {
    const self = this as unknown as { parent: LevelAware; logger: FastifyBaseLogger };
    // Until there is a child, the parent's level decides (as the child would inherit it).
    if (self.parent.isLevelEnabled && !self.parent.isLevelEnabled(level)) return;
    (self.logger[level] as (...a: unknown[]) => void)(...args);
  };
}

/**
 * Fastify's `childLoggerFactory`: per-request loggers made on first use. A route with a log level
 * or serializers of its own gets pino's child at once, as Fastify would make it.
 */
export const lazyChildLogger: NonNullable<FastifyServerOptions['childLoggerFactory']> = function lazyChildLogger(logger, bindings, opts) {
  if (opts.level !== undefined || opts.serializers !== undefined) return logger.child(bindings, opts);
  return new RequestLogger(logger as LevelAware, bindings) as unknown as FastifyBaseLogger;
};
