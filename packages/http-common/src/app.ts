import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import { installErrorHandler, installNotFoundHandler } from './error-handler.js';
import { metricsPlugin } from './metrics.js';
import { lazyChildLogger } from './request-logger.js';
import type { HttpProblem } from './problem.js';
import { validatorCompiler } from './validation.js';
import { readTls, reloadTlsOnChange, type TlsFiles } from './tls.js';

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export interface CreateAppOptions {
  /** A pino logger, pino options, or false for silence (tests). */
  logger?: FastifyServerOptions['logger'] | FastifyBaseLogger;
  bodyLimit?: number;
  /** Serve HTTPS from these files, reloading them when they change. */
  tls?: TlsFiles;
  metricsPath: string;
  /** Collect process metrics; off in tests that build many apps. */
  defaultMetrics?: boolean;
  openapi: { title: string; version: string; description?: string; securitySchemes?: Record<string, unknown> };
  /** Where the OpenAPI UI lives (`/docs`); its JSON is at `${docsPath}/json`. */
  docsPath?: string;
  /** Turns dependency errors (database down, AWS faults) into HTTP problems. */
  classifyError?: (error: unknown) => HttpProblem | undefined;
}

/**
 * The Fastify instance both services start from: TypeBox types, JSON problem errors,
 * Prometheus metrics, OpenAPI docs, optional HTTPS with certificate reload.
 * It never listens; server.ts does.
 */
export async function createApp(opts: CreateAppOptions): Promise<App> {
  const logger = opts.logger ?? false;
  const isInstance = typeof logger === 'object' && logger !== null && 'child' in logger;
  const app = Fastify({
    ...(isInstance ? { loggerInstance: logger as FastifyBaseLogger } : { logger: logger as FastifyServerOptions['logger'] }),
    // Without a logger Fastify makes no children at all, but only with its own factory.
    ...(logger ? { childLoggerFactory: lazyChildLogger } : {}),
    ...(opts.tls ? { https: readTls(opts.tls) } : {}),
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  app.setValidatorCompiler(validatorCompiler());
  // The APIs speak JSON only: anything else is 415, not a string body that fails validation.
  app.removeContentTypeParser('text/plain');
  installErrorHandler(app, opts.classifyError);
  await app.register(metricsPlugin, { path: opts.metricsPath, defaultMetrics: opts.defaultMetrics ?? true });
  await installNotFoundHandler(app, { onResponse: app.unmatchedLatencyHook });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: opts.openapi.title, version: opts.openapi.version, description: opts.openapi.description ?? '' },
      components: { securitySchemes: (opts.openapi.securitySchemes ?? {}) as never },
    },
  });
  await app.register(swaggerUi, { routePrefix: opts.docsPath ?? '/docs', uiConfig: { deepLinking: true } });

  if (opts.tls) {
    const tls = opts.tls;
    app.addHook('onReady', async () => {
      const watcher = await reloadTlsOnChange(app.server as never, tls, app.log);
      app.addHook('onClose', () => watcher.close());
    });
  }
  return app;
}
