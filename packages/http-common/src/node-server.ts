import http, { type IncomingMessage, type RequestListener } from 'node:http';
import https from 'node:https';
import { answerProblem, answerUnsupportedExpect } from './client-errors.js';

export interface NodeServerOptions {
  /** Serve HTTPS with this certificate and key. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
  requestMs: number;
  headersMs: number;
  keepAliveMs: number;
  /** True once the server has begun to close. */
  isClosing: () => boolean;
}

/**
 * The Node server under Fastify (its `serverFactory`). What every request needs before routing is
 * done here, once per request, rather than in Fastify hooks, which cost a hook-runner pass per
 * request each (measured in paired rounds: the two we had cost ~9% of a `GET /images/{id}`):
 * - a request without the Host header HTTP/1.1 requires is answered 400 as problem+json (Node's
 *   own check answers a bare 400);
 * - a response whose headers go out after the close began says `Connection: close`, so the client
 *   sends nothing more on a connection about to close. Fastify says so itself for requests that
 *   arrive after the close began, but not for those that arrived before and are answered after.
 */
export function createNodeServer(fastifyHandler: RequestListener, opts: NodeServerOptions): http.Server {
  const { isClosing } = opts;
  class Response<Request extends IncomingMessage = IncomingMessage> extends http.ServerResponse<Request> {
    override writeHead(...args: unknown[]): this {
      if (isClosing()) this.shouldKeepAlive = false;
      return super.writeHead.apply(this, args as Parameters<http.ServerResponse['writeHead']>);
    }
  }
  const serverOptions: http.ServerOptions = {
    ServerResponse: Response,
    requireHostHeader: false,
    // Node checks request timeouts every connectionsCheckingInterval (default 30 s): check each second.
    connectionsCheckingInterval: 1000,
  };
  const onRequest: RequestListener = (request, response) => {
    if (!request.headers.host && request.httpVersion === '1.1') answerProblem(response, 400, 'An HTTP/1.1 request needs a Host header.');
    else fastifyHandler(request, response);
  };
  const server = opts.tls ? https.createServer({ ...serverOptions, ...opts.tls }, onRequest) : http.createServer(serverOptions, onRequest);
  server.requestTimeout = opts.requestMs;
  server.headersTimeout = opts.headersMs;
  server.keepAliveTimeout = opts.keepAliveMs;
  server.setTimeout(0); // idle connections are governed by keepAliveTimeout, requests by requestTimeout
  answerUnsupportedExpect(server);
  return server;
}
