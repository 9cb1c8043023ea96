import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import type { FastifyBaseLogger, FastifyRequest, preParsingHookHandler } from 'fastify';

/**
 * A route's common requests answered by the Node server itself, before Fastify. For the hottest
 * route of a service only: Fastify's per-request machinery (request and reply objects, the logger
 * child, the hook and reply pipeline) cost about a fifth of an admission review in the deployed
 * configuration. A direct route answers only what it is sure of, the same way the route does, and
 * hands everything else to Fastify's route (`pass`), which stays the one that answers errors and
 * every unusual request.
 */
export type DirectHandler = (request: IncomingMessage, response: ServerResponse, exchange: DirectExchange) => void;

/** What a direct handler can do besides reading the request and writing the response. */
export interface DirectExchange {
  /**
   * Hands the request to Fastify's route: before its body was read, or with the body the handler
   * read (the route then reads that: `bodyReadBefore`).
   */
  pass(body?: Buffer): void;
  /**
   * Reads the whole body, then calls `then`; never for a request that ends without it (the client
   * went away: Node closes the connection, and nothing is answered). If `then` throws, the
   * request is handed to the route with its body, which answers it (a 500 if the route throws
   * too): a direct handler's fault never takes the process down.
   */
  readBody(then: (body: Buffer) => void): void;
  /** Sends a JSON answer and records the request as Fastify's would be (`completed`). */
  sendJson(status: number, json: string | Buffer): void;
}

/** The body a direct route read before it passed the request to Fastify. */
const BODY = Symbol('body read by a direct route');
type PassedRequest = IncomingMessage & { [BODY]?: Buffer };

/**
 * The preParsing hook of a route with a direct handler: Fastify reads the body the direct handler
 * already read, as if from the connection (Fastify still checks it against the Content-Length
 * and the body limit).
 */
export const bodyReadBefore: preParsingHookHandler = (request: FastifyRequest, _reply, payload, done) => {
  const body = (request.raw as PassedRequest)[BODY];
  done(null, body === undefined ? payload : Readable.from([body], { objectMode: false }));
};

/** A finished request, as the log controller records one: its route, status and time. */
export type DirectCompleted = (method: string, route: string, status: number, ms: number, log: FastifyBaseLogger) => void;

/** The direct routes of an app, by path (without the query), one method each. */
export class DirectRoutes {
  private readonly routes = new Map<string, { method: string; handler: DirectHandler }>();

  constructor(
    private readonly log: () => FastifyBaseLogger,
    private readonly completed: DirectCompleted,
  ) {}

  add(method: string, path: string, handler: DirectHandler): void {
    if (this.routes.has(path)) throw new Error(`${path} has a direct handler already`);
    this.routes.set(path, { method, handler });
  }

  /** node-server.ts's request listener: a direct route's, or Fastify's. */
  listener(fastify: RequestListener): RequestListener {
    return (request, response) => {
      const url = request.url!;
      const query = url.indexOf('?');
      const path = query < 0 ? url : url.slice(0, query);
      const route = this.routes.get(path);
      if (route === undefined || route.method !== request.method) {
        fastify(request, response);
        return;
      }
      const exchange = new Exchange(request, response, path, fastify, this.log(), this.completed);
      try {
        route.handler(request, response, exchange);
      } catch (err) {
        exchange.failed(err, undefined);
      }
    };
  }
}

/**
 * Whether a request carries a JSON body a direct route may read: `Content-Type: application/json`
 * exactly (as the Kubernetes API server sends it), a Content-Length of at most `limit`, and nothing
 * that asks for more (`Transfer-Encoding`, `Expect`). Fastify's route answers the rest.
 */
export function plainJsonBody(request: IncomingMessage, limit: number): boolean {
  const { headers } = request;
  const length = headers['content-length'];
  return (
    headers['content-type'] === 'application/json' &&
    length !== undefined &&
    /^\d{1,10}$/.test(length) &&
    Number(length) <= limit &&
    headers['transfer-encoding'] === undefined &&
    headers.expect === undefined
  );
}

class Exchange implements DirectExchange {
  private readonly start = performance.now();
  private reading = false;

  constructor(
    private readonly request: PassedRequest,
    private readonly response: ServerResponse,
    private readonly route: string,
    private readonly fastify: RequestListener,
    private readonly log: FastifyBaseLogger,
    private readonly completed: DirectCompleted,
  ) {}

  pass(body?: Buffer): void {
    if (body !== undefined) this.request[BODY] = body;
    this.fastify(this.request, this.response);
  }

  readBody(then: (body: Buffer) => void): void {
    this.reading = true;
    const chunks: Buffer[] = [];
    this.request.on('data', (chunk: Buffer) => chunks.push(chunk));
    this.request.on('end', () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      try {
        then(body);
      } catch (err) {
        this.failed(err, body);
      }
    });
    this.request.on('error', () => {});
  }

  /**
   * A direct handler threw: the route answers the request, unless an answer has begun or the body
   * is being read (the route could not read it again): then the connection is closed.
   */
  failed(err: unknown, body: Buffer | undefined): void {
    this.log.error({ err, req: { method: this.request.method, url: this.route } }, 'direct handler failed; the route answers');
    if (!this.response.headersSent && (body !== undefined || !this.reading)) this.pass(body);
    else this.response.destroy();
  }

  sendJson(status: number, json: string | Buffer): void {
    this.response.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(json),
    });
    this.response.end(json);
    this.completed(this.request.method!, this.route, status, performance.now() - this.start, this.log);
  }
}
