import net, { type Server } from 'node:net';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  type FastifyBaseLogger,
  type FastifySchema,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import type { RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import { BodyBudget } from './body-budget.js';
import { answerProblem, clientErrorHandler } from './client-errors.js';
import { createNodeServer } from './node-server.js';
import { installErrorHandler, installNotFoundHandler, sendProblem } from './error-handler.js';
import { HttpProblem } from './problem.js';
import { httpMetrics, metricsRoute } from './metrics.js';
import { AccessLog, logAnswered } from './access-log.js';
import { DirectRoutes, type DirectHandler } from './direct-routes.js';
import { jsonBodyParser } from './json-bodies.js';
import { lazyRequestLogger } from './request-logger.js';
import { validatorCompiler } from './validation.js';
import { readTls, reloadTlsOnChange, type TlsFiles } from './tls.js';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The first step of a graceful close: stops accepting connections, but keeps answering on the
     * open ones, with `Connection: close` on every response, until the clients have closed them
     * or `maxMs` has passed.
     * Closing a kept-alive connection while it is idle resets a request the client may be
     * sending on it at that moment (a POST it cannot retry: a failed admission review); a
     * connection the client closes itself after a `Connection: close` answer loses nothing.
     */
    drain(maxMs: number): Promise<void>;
    /**
     * Answers `method path` requests in `handler` before Fastify routes them (direct-routes.ts);
     * the route must also be a Fastify route, which answers what the handler passes on.
     */
    answerDirectly(method: string, path: string, handler: DirectHandler): void;
    /**
     * Moves the connection limit (CreateAppOptions.maxConnections) while the server runs, for a
     * service whose memory for connections changes (imagelist's, with its index); the cap moves
     * with it. Connections already open stay open: past the new limit, the next new connection
     * closes the idle ones.
     */
    limitConnections(max: number): void;
  }
}

/** Resolves once the server holds no connection, or after `maxMs`. */
async function connectionsGone(server: Server, maxMs: number): Promise<void> {
  const until = Date.now() + maxMs;
  const count = () => new Promise<number>((resolve) => server.getConnections((err, n) => resolve(err ? 0 : n)));
  while (Date.now() < until && (await count()) > 0) await new Promise((r) => setTimeout(r, 50));
}

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
  /** Server timeouts; the defaults (SERVER_TIMEOUTS) suit both services. */
  timeouts?: Partial<ServerTimeouts>;
  /** A request slower than this is logged at `warn` (default 1000 ms). */
  slowRequestMs?: number;
  /** Turns dependency errors (database down, AWS faults) into HTTP problems. */
  classifyError?: (error: unknown) => HttpProblem | undefined;
  /** Bytes of request bodies read and worked on at once (body-budget.ts); default BODY_MEMORY. */
  bodyMemory?: number;
  /**
   * Past this many connections, a new one closes the idle ones; past 1.5 times as many, a new one
   * is closed at once (node-server.ts); default MAX_CONNECTIONS.
   */
  maxConnections?: number;
}

export interface ServerTimeouts {
  /** The whole request, body included, must arrive within this (a body sent a byte a second is cut off). */
  requestMs: number;
  /** The request's headers must arrive within this. */
  headersMs: number;
  /** An idle kept-alive connection is closed after this. */
  keepAliveMs: number;
  /**
   * A connection with response bytes waiting to be sent, whose client has accepted none of them
   * for this long, is destroyed (0: never).
   */
  sendStallMs: number;
  /** A request whose body finds no room in the memory for bodies within this is answered 503. */
  bodyWaitMs: number;
}

/**
 * - request 10 s: admission reviews (up to 8 MiB) come from the API server over a fast network
 *   and the API server gives up on a webhook after its timeoutSeconds (5 s here, 30 s at most);
 *   a PUT body is a few hundred bytes. A slower request is an attack or a broken client.
 * - headers 5 s: within the request timeout, as Node requires.
 * - keep-alive 95 s: longer than the 90 s idle timeout of Go's HTTP transport, which the
 *   kube-apiserver's webhook client and most CI clients use, so the client always closes an idle
 *   connection first and never sends a request on one we are closing (a POST it cannot retry).
 * - send stall 30 s: nothing else bounds sending a response, and a client that sends
 *   `GET /images` and never reads (no login needed) held its connection and the buffered answer
 *   for ever: ~1,000 of them exhausted the heap. Our clients (kube-apiserver, CI scripts) read at
 *   once, and the kernel's socket buffers absorb short pauses, so a client that accepts no byte
 *   for 30 s is gone or hostile. A slow client that keeps reading is never cut off, nor a slow
 *   handler (nothing is waiting to be sent while it works).
 * - body wait 2 s: within the API server's webhook timeout (5 s here), so a review that found no
 *   room is answered 503 rather than abandoned, while the reviews in flight are read and answered
 *   (a 7 MB review takes ~150 ms).
 */
export const SERVER_TIMEOUTS: ServerTimeouts = {
  requestMs: 10_000,
  headersMs: 5_000,
  keepAliveMs: 95_000,
  sendStallMs: 30_000,
  bodyWaitMs: 2_000,
};

/**
 * The memory set aside for request bodies (body-budget.ts): two of imagelist's largest admission
 * reviews (8 MiB) at once. A burst of 30 reviews of 7 MB took imagelist, with the Deployment's
 * NODE_OPTIONS, from 115 to 206-211 MB resident (24 MiB: 221 MB; unbounded: 660 MB), which the
 * Deployment's 384 MiB limit leaves beside its largest index (1,500,000 images, 266-283 MB at its
 * peak). Bodies of at most BODY_FREE_BYTES are not counted: every ImageReview, a PUT of a few tags, most
 * pods' AdmissionReviews.
 */
const BODY_MEMORY = 16 * 1024 * 1024;
const BODY_FREE_BYTES = 16 * 1024;
/**
 * While bodies wait for room, one being read must arrive at 1 MiB/s, ahead by 1 MiB at most, or its
 * request is ended (body-budget.ts): an API server sends a review on the cluster's network at
 * tens of MB/s; two clients that held the room by trickling 8 MiB bodies must now send 2 MiB/s.
 * At 4 MiB/s, a burst of 30 reviews of 7 MB from one client had reviews ended: the client, sending
 * all 30 (the refused ones' bodies are read and dropped), sent some nothing for 280 ms.
 */
const BODY_MIN_RATE = { bytesPerSecond: 1024 * 1024, graceBytes: 1024 * 1024 };
/**
 * ~62 MB of connections under HTTPS (~31 KB each); 12,000 kept-alive connections took imagelist
 * to 247-265 MB resident with this limit, 565 MB without. Its clients need far fewer: the API
 * servers keep a connection per review in flight, CI clients and Prometheus one each.
 */
const MAX_CONNECTIONS = 2000;

/**
 * A wildcard route (`/images/*`, whose parameter may hold slashes) is documented as `{*}` with a
 * parameter named `*`, which OpenAPI client generators cannot name: it is documented under the
 * wildcard schema's `title` instead (`/images/{id}`).
 */
function nameWildcard({ schema, url }: { schema: FastifySchema; url: string }): { schema: FastifySchema; url: string } {
  const params = schema?.params as { properties?: Record<string, { title?: string }> } | undefined;
  const name = params?.properties?.['*']?.title;
  if (!url.endsWith('/*') || !name || !params?.properties) return { schema, url };
  const { '*': wildcard, ...rest } = params.properties;
  return {
    schema: { ...schema, params: { ...params, properties: { ...rest, [name]: wildcard }, required: [name] } },
    url: `${url.slice(0, -1)}:${name}`,
  };
}

/**
 * The Fastify instance both services start from: TypeBox types, JSON problem errors,
 * Prometheus metrics, OpenAPI docs, optional HTTPS with certificate reload.
 * It never listens; server.ts does.
 */
export async function createApp(opts: CreateAppOptions): Promise<App> {
  // Silent rather than none: Fastify calls the log controller, which also records the metrics,
  // only for an app with a logger.
  const logger = opts.logger || { level: 'silent' };
  const timeouts = { ...SERVER_TIMEOUTS, ...opts.timeouts };
  const isInstance = typeof logger === 'object' && 'child' in logger;
  const tls = opts.tls && readTls(opts.tls);
  const metrics = httpMetrics({ defaultMetrics: opts.defaultMetrics ?? true });
  // draining (drain()): open connections answered, each response saying `Connection: close`;
  // closing (app.close()): idle connections are closed.
  let state: 'open' | 'draining' | 'closing' = 'open';
  /** Every answered request, Fastify's or a direct route's. */
  const answered = (method: string, route: string, status: number, seconds: number) => {
    metrics.record(method, route, status, seconds);
    // A response whose headers went out before the close began still says keep-alive, and Node
    // closes idle connections only once, when the close begins: close this one when it is done,
    // or the close waits for the client (up to the keep-alive timeout) and the grace runs out.
    if (state === 'closing') setImmediate(() => app.server.closeIdleConnections());
  };
  const completed = (request: FastifyRequest, reply: FastifyReply) =>
    answered(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  const bodyLimit = opts.bodyLimit ?? 1024 * 1024;
  const bodies = new BodyBudget({
    bytes: opts.bodyMemory ?? BODY_MEMORY,
    freeBytes: BODY_FREE_BYTES,
    waitMs: timeouts.bodyWaitMs,
    refuse: (response) => {
      metrics.bodyRefused();
      answerProblem(response, 503, 'More request bodies are being read than the memory set aside for them holds; send the request again.', {
        keepOpen: true,
        headers: { 'retry-after': '1' },
      });
    },
    minRate: BODY_MIN_RATE,
    // No answer: the client is still sending, and the route reading the body may answer it. The
    // route sees the connection close, as when a client leaves mid-body.
    tooSlow: (request) => {
      metrics.bodyTooSlow();
      request.socket.destroy();
    },
  });
  bodies.largestBody = bodyLimit;
  let connectionLimit = opts.maxConnections ?? MAX_CONNECTIONS;
  metrics.connectionLimit(() => connectionLimit);
  const slowMs = opts.slowRequestMs ?? 1000;
  const direct: DirectRoutes = new DirectRoutes(
    (): FastifyBaseLogger => app.log,
    (method, route, status, ms, log) => {
      answered(method, route, status, ms / 1000);
      logAnswered(log, slowMs, { req: { method, url: route }, res: { statusCode: status }, responseTime: ms });
    },
  );
  const app = Fastify({
    ...(isInstance ? { loggerInstance: logger } : { logger: logger as FastifyServerOptions['logger'] }),
    logController: new AccessLog(slowMs, completed),
    childLoggerFactory: lazyRequestLogger,
    serverFactory: (handler) =>
      createNodeServer(direct.listener(handler), {
        tls,
        ...timeouts,
        onSendStall: () => metrics.sendStalled(),
        isClosing: () => state !== 'open',
        bodies,
        maxConnections: () => connectionLimit,
        onConnectionLimit: () => metrics.connectionLimitReached(),
        onConnectionDropped: () => metrics.connectionDropped(),
      }),
    // The server is createNodeServer's; Fastify reads this only to say https in its addresses.
    ...(tls ? { https: tls } : {}),
    bodyLimit,
    // While closing, requests that still arrive on kept-alive connections are answered (with
    // `Connection: close`: node-server.ts), not refused: a refused admission review denies a deploy.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    clientErrorHandler,
    frameworkErrors: (error, _request, reply) => {
      sendProblem(
        reply,
        new HttpProblem(error.statusCode ?? 400, error.code === 'FST_ERR_BAD_URL' ? 'The request URL is malformed.' : error.message),
      );
    },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // A chunked body counts as the largest a route reads.
  app.addHook('onRoute', (route) => {
    bodies.largestBody = Math.max(bodies.largestBody, route.bodyLimit ?? bodyLimit);
  });
  app.decorate('answerDirectly', (method: string, path: string, handler: DirectHandler) => direct.add(method, path, handler));
  app.decorate('limitConnections', (max: number) => {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`a connection limit must be a positive integer, not ${max}`);
    connectionLimit = max;
  });
  app.addHook('preClose', async () => {
    state = 'closing';
  });
  app.decorate('drain', async (maxMs: number) => {
    if (state !== 'open') return;
    state = 'draining';
    // net.Server's close, not http.Server's: stop accepting, but leave kept-alive connections open
    // (http.Server's also closes the idle ones at once). A new connection is refused, which a
    // client knows it may retry; Fastify's own close later finds the listener already closed.
    if (app.server.listening) net.Server.prototype.close.call(app.server);
    await connectionsGone(app.server, maxMs);
  });

  app.setValidatorCompiler(validatorCompiler());
  // The APIs speak JSON only: anything else is 415, not a string body that fails validation.
  app.removeContentTypeParser('text/plain');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser);
  installErrorHandler(app, opts.classifyError);
  await app.register(metricsRoute, { path: opts.metricsPath, metrics });
  installNotFoundHandler(app);
  await app.register(swagger, {
    transform: nameWildcard,
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
