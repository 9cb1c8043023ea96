import http, { type IncomingMessage, type RequestListener } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { BodyBudget } from './body-budget.js';
import {
  answerConnect,
  answeredBeforeBody,
  answerProblem,
  answerUnsupportedExpect,
  clientErrorHandler,
  endWith,
  waitsItsTurn,
} from './client-errors.js';
import { OpenConnections } from './open-connections.js';

export interface NodeServerOptions {
  /** Serve HTTPS with this certificate and key. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
  requestMs: number;
  headersMs: number;
  keepAliveMs: number;
  /** A connection whose client accepts no byte of a pending response for this long is destroyed; 0: never. */
  sendStallMs: number;
  /** Called for each connection destroyed for a send stall. */
  onSendStall?: (() => void) | undefined;
  /** True once the server has begun to close. */
  isClosing: () => boolean;
  /** Bounds the memory of the request bodies read at once. */
  bodies: BodyBudget;
  /**
   * Past this many connections, a new one makes the server close its idle ones (closeIdleOverLimit);
   * read at each new connection, so that a service may move it while it runs (app.limitConnections).
   */
  maxConnections: () => number;
  /** Called each time a new connection finds the server past maxConnections. */
  onConnectionLimit?: (() => void) | undefined;
  /** Called each time a connection is closed to hold CONNECTION_CAP × maxConnections: the new one, or an unstarted one of the busiest address. */
  onConnectionDropped?: (() => void) | undefined;
}

/**
 * The Node server under Fastify (its `serverFactory`). What every request needs before routing is
 * done here, once per request, rather than in Fastify hooks, which cost a hook-runner pass per
 * request each (measured in paired rounds: the two we had cost ~9% of a `GET /images/{id}`):
 * - a request without the Host header HTTP/1.1 requires, or with more than one, or one that is no
 *   host, is answered 400 as problem+json (RFC 9112 3.2; Node's own check answers a bare 400 for
 *   a missing one only), one with a compressed body (`Content-Encoding`) 415, and one with a
 *   transfer coding other than chunked 501 (RFC 9112 6.1: Node would pass a gzipped body on as it
 *   came);
 * - a response whose headers go out after the close began says `Connection: close`, so the client
 *   sends nothing more on a connection about to close. Fastify says so itself for requests that
 *   arrive after the close began, but not for those that arrived before and are answered after;
 * - a connection that pipelines more than MAX_QUEUED_RESPONSES requests ahead of its answers gets
 *   those answers, then a 429 and the connection closed (queuedBehind);
 * - a pipelined request is worked on once the answers ahead of it are sent, not at once as Node
 *   hands it over: a read pipelined behind a PUT ran before the PUT was made, and answered 404 for
 *   the image its client had just written (RFC 9112 9.3.2 allows parallel work on pipelined
 *   requests only if all are safe);
 * - a request whose body does not fit the memory left for bodies waits for it (body-budget.ts);
 * - a client that shuts its side of the connection (a FIN) once it has written its requests gets
 *   no answer not sent by then: Node closes the connection, as it does by default. Kept half-open
 *   to answer them (`httpAllowHalfOpen`), a client that never read turned the answers into
 *   orphaned sockets the kernel kept, with their unsent data, out of the process's sight and its
 *   connection limit: 100 such connections asking for three lists each held 373 MB.
 */
export function createNodeServer(fastifyHandler: RequestListener, opts: NodeServerOptions): http.Server {
  const { isClosing, bodies } = opts;
  class Response<Request extends IncomingMessage = IncomingMessage> extends http.ServerResponse<Request> {
    override writeHead(...args: unknown[]): this {
      if (isClosing()) this.shouldKeepAlive = false;
      answeredBeforeBody(this.req);
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
    // Node gives a response its socket at once unless another response on it is still unsent;
    // then this request is worked on when Node gives it the socket, once the answers ahead are sent.
    if (response.socket !== null) handle(request, response);
    else if (queuedBehind(request.socket, response)) {
      const turnCame = waitsItsTurn(request);
      response.once('socket', () => {
        if (turnCame()) timeFromTurn(request, opts.requestMs);
        handle(request, response);
      });
    }
  };
  const handle: RequestListener = (request, response) => {
    const encoding = request.headers['content-encoding'];
    const transfer = request.headers['transfer-encoding'];
    if (!request.headers.host && request.httpVersion === '1.1')
      answerProblem(response, 400, 'An HTTP/1.1 request needs a Host header.', {
        errors: [{ field: 'headers.host', message: 'is missing' }],
      });
    else if (!oneHost(request))
      answerProblem(response, 400, 'A request has one Host header, naming a host.', {
        errors: [{ field: 'headers.host', message: 'must be one header naming a host' }],
      });
    else if (transfer !== undefined && transfer.trim().toLowerCase() !== 'chunked')
      answerProblem(
        response,
        501,
        `Transfer-Encoding ${transfer.slice(0, 64)} is not supported; send the body chunked or with a Content-Length.`,
      );
    // Fastify would parse a compressed body as it came, and answer that it is not JSON.
    else if (encoding !== undefined && encoding.toLowerCase() !== 'identity')
      answerProblem(response, 415, `Content-Encoding ${encoding.slice(0, 64)} is not supported; send the body uncompressed.`, {
        errors: [{ field: 'headers.content-encoding', message: 'must be identity' }],
      });
    else if (bodies.admit(request, response, fastifyHandler)) fastifyHandler(request, response);
  };
  // A TLS handshake gets the headers' time, not Node's default 120 s: 6,000 connections that never
  // sent a ClientHello were held that long (clientErrorHandler closes them), ~80 MB for two minutes.
  const tlsOptions = opts.tls && { ...opts.tls, handshakeTimeout: opts.headersMs };
  const server = tlsOptions
    ? https.createServer({ ...serverOptions, ...tlsOptions }, onRequest)
    : http.createServer(serverOptions, onRequest);
  server.requestTimeout = opts.requestMs;
  server.headersTimeout = opts.headersMs;
  server.keepAliveTimeout = opts.keepAliveMs;
  server.setTimeout(0); // idle connections are governed by keepAliveTimeout, requests by requestTimeout
  answerUnsupportedExpect(server);
  answerConnect(server);
  const stalls = opts.sendStallMs > 0 ? closeSendStalls(server, opts.sendStallMs, opts.onSendStall) : undefined;
  const connections = new OpenConnections(server, Boolean(tlsOptions));
  closeIdleOverLimit(server, connections, opts.maxConnections, opts.onConnectionLimit);
  holdToCap(server, connections, opts.maxConnections, opts.onConnectionDropped);
  closeStragglersOnClose(server, connections, () => stalls?.closing());
  return server;
}

/**
 * How long a request whose body is still arriving when the close begins has left to finish sending
 * it. A body sent at any usable rate is in by then (the drain before the close has given it 2 s
 * already); one a byte a second is not.
 */
export const ARRIVING_AT_CLOSE_MS = 1000;

/**
 * The request timeout, from its turn, of a pipelined request whose timeout ran out while it waited
 * for the answers ahead (clientErrorHandler): Node times a request once, and no longer times it.
 */
function timeFromTurn(request: IncomingMessage, requestMs: number): void {
  if (request.complete) return;
  const timer = setTimeout(() => {
    if (!request.complete && !request.socket.destroyed)
      clientErrorHandler(Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), request.socket);
  }, requestMs).unref();
  request.once('end', () => clearTimeout(timer));
  request.once('close', () => clearTimeout(timer));
}

/**
 * Node times out a connection that has not sent a whole request's headers (a client that connected
 * and sent nothing, a TLS health check, a slow client) on the listener's interval, which
 * `server.close()` stops; nor is such a connection idle to Node's close. Left alone, one of them
 * held every shutdown until the grace ran out (10 s, exit 1). At the close they are destroyed with
 * the idle ones: no request of theirs has been answered or handed to a route, and by then the
 * drain has given a client 2 s to finish sending one. A response in progress marks a request that
 * has (`_httpMessage`, set while a response holds its socket), which the close lets finish.
 *
 * A request whose body is still arriving is past its headers but, with the request timeout stopped
 * too, held the shutdown the same way (a body trickled a byte a second: exit 1 after the 10 s
 * grace). Its route has not acted on it, since handlers run once the body is in: one still
 * arriving ARRIVING_AT_CLOSE_MS after the close began has its connection destroyed, and its client
 * sends it again elsewhere. `onClose` runs first (the send stalls' shorter limit while closing).
 */
function closeStragglersOnClose(server: http.Server, connections: OpenConnections, onClose: () => void): void {
  const close = server.close.bind(server);
  server.close = (...args: Parameters<http.Server['close']>) => {
    onClose();
    for (const socket of [...connections.unstarted()]) socket.destroy();
    const cutArriving = () => {
      for (const socket of [...connections.arriving()]) socket.destroy();
    };
    let sweep: NodeJS.Timeout | undefined;
    const start = setTimeout(() => {
      cutArriving();
      // and those that began arriving on kept-alive connections since
      sweep = setInterval(cutArriving, 250).unref();
    }, ARRIVING_AT_CLOSE_MS).unref();
    server.once('close', () => {
      clearTimeout(start);
      clearInterval(sweep);
    });
    return close(...args);
  };
}

/**
 * Each open connection holds ~31 KB under HTTPS (TLS state, buffers, the socket's objects), and a
 * client may keep one open for the keep-alive timeout with a request every 95 s: 12,000 of them
 * took imagelist from 137 to 565 MB resident, past the Deployment's 384 MiB limit. Past `max`
 * connections, a new one makes the server close those of its connections that wait between
 * requests (Node's closeIdleConnections; nginx drains its kept-alive connections alike), rather
 * than refuse the new one: a request in flight is never cut; a connection that has not yet sent
 * a whole request (the new one too) is not idle to Node, and the handshake, headers and request
 * timeouts bound it; a client whose idle connection was closed opens another (the
 * kube-apiserver's does). Counting is per TCP connection, TLS handshakes included.
 */
function closeIdleOverLimit(server: http.Server, connections: OpenConnections, max: () => number, onLimit: (() => void) | undefined): void {
  server.on('connection', () => {
    if (connections.size > max()) {
      onLimit?.();
      server.closeIdleConnections();
    }
  });
}

/** The hard cap on open connections, as a multiple of the limit past which idle ones are closed. */
export const CONNECTION_CAP = 1.5;
/** The cap on open connections for a connection limit of `max`. */
const connectionCap = (max: number): number => Math.ceil(max * CONNECTION_CAP);

/**
 * The idle ones closed, what is left open is connections that have not sent a whole request (each
 * timed out after the 5 s headers timeout, TLS handshakes included) and requests in flight. A
 * client that opens connections and sends nothing keeps as many open as it opens in 5 s: ~1,500
 * silent TLS connections took imagelist from 112 to 186 MB resident (~50 KB each), and ~6,600 at
 * once to 441 MB, past the Deployment's 384 MiB. Past the cap (3,000 by default: ~150 MB), a new
 * connection from the client address that holds the most is closed at once, before any TLS work;
 * one from another address closes the oldest unstarted connection of that address instead
 * (open-connections.ts), which has sent no request it could lose. So a client that holds the cap
 * with silent connections keeps the API servers' new connections out only if it is the API
 * servers' own address (a proxy in front); refusing every new connection at the cap, as before,
 * let it keep them all out. A refused client retries; a replica killed for its memory takes every
 * client's requests with it and reloads its index.
 */
function holdToCap(server: http.Server, connections: OpenConnections, max: () => number, onDropped: (() => void) | undefined): void {
  server.on('connection', (socket: Socket) => {
    if (connections.size <= connectionCap(max())) return;
    onDropped?.();
    const busiest = connections.busiestAddress();
    const unstarted = busiest !== undefined && busiest !== socket.remoteAddress ? connections.oldestUnstarted(busiest) : undefined;
    (unstarted ?? socket).destroy();
  });
}

/** A Host value: a reg-name or IP literal and an optional port (RFC 3986 3.2.2), or none (HTTP/1.0). */
const HOST_VALUE = /^(?:[\w.~!$&'()*+,;=%-]*|\[[\w.:%-]+\])(?::\d*)?$/;

/** True unless the request has two or more Host header lines, or one whose value is not a host. */
function oneHost(request: IncomingMessage): boolean {
  const { host } = request.headers;
  if (host !== undefined && !HOST_VALUE.test(host)) return false;
  const raw = request.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host' && ++seen > 1) return false;
  }
  return true;
}

/**
 * Requests one connection may pipeline ahead of its answers. Node parses every request of a chunk
 * it reads and the handlers all run before any answer is sent, so without a bound one 64 KB write
 * of 1,500 `GET /docs/json` (no login needed) made 1,500 answers of 100 KB at once: 320 MB, and an
 * event loop stalled for seconds. No client we serve pipelines (Go's, kubectl's and the
 * kube-apiserver's HTTP/1.1 clients never do); one that does gets its first answers, then a 429
 * with `Connection: close`, after which it may send the rest again (RFC 9112, 9.3.2).
 */
export const MAX_QUEUED_RESPONSES = 16;
const QUEUED = Symbol('responses queued behind the one being sent');
type CountedSocket = Socket & { [QUEUED]?: number };

/**
 * Counts a response that waits for the ones before it on its connection. Past the bound it
 * answers 429 and closes the connection after it, once, and reads no more of it (stopReading);
 * the requests still parsed from the chunk already read are dropped, and Node discards them with
 * the connection.
 */
function queuedBehind(socket: CountedSocket, response: http.ServerResponse): boolean {
  if (socket.destroyed) return false;
  const queued = (socket[QUEUED] ?? 0) + 1;
  if (queued > MAX_QUEUED_RESPONSES) {
    if (queued === MAX_QUEUED_RESPONSES + 1) {
      socket[QUEUED] = queued;
      answerProblem(response, 429, `More than ${MAX_QUEUED_RESPONSES} requests pipelined on one connection; send the rest again.`);
      stopReading(socket);
    }
    return false;
  }
  socket[QUEUED] = queued;
  response.once('close', () => {
    socket[QUEUED]!--;
  });
  return true;
}

/**
 * The send stall that closes a connection once the server is closing. The close waits for every
 * response to be sent, and the grace for nobody: a client that asked for a streamed list of the
 * allowlist and read none of it held the shutdown to the 10 s grace and exit 1. A client still
 * reading shows progress each ~1.5 MB the kernel takes (below), so 2 s cuts only one slower than
 * ~750 KB/s, which a shutdown could not wait for anyway.
 */
export const STALL_AT_CLOSE_MS = 2000;

/**
 * Reads nothing more from a connection that is to close after its queued answers. Node pauses a
 * socket only while its answers' data backs up, and resumes it as they drain: until the 429 was
 * sent, behind the queued answers, each turn of the event loop read and parsed another 64 KB of
 * pipelined requests, each held (request and response objects) until the connection closed. 50
 * connections pipelining 20,000 ImageReviews each took imagelist from 115 to 333 MB resident
 * within 5 s, and once past its 256 MB heap (the Deployment's 384 MiB limit). Node calls
 * `resume()` to read again; on this socket it no longer does.
 *
 * With the client's requests left unread, closing the socket resets the connection, and a reset
 * discards what the client has not read yet: Node destroyed the socket as soon as the 429 was
 * written (`destroySoon`), and over HTTPS, where the client reads later, it got 11 of the 17
 * answers and no 429 (100 requests of 1 KB). The connection is ended instead, and destroyed
 * CLOSE_AFTER_ERROR_MS later unless the client has closed it (endWith), as one answered an error.
 */
function stopReading(socket: Socket): void {
  socket.pause();
  socket.resume = () => socket;
  socket.destroySoon = () => endWith(socket, '');
}

/** A connection's send progress as of the last sweep that saw it move. */
interface Progress {
  sent: number;
  since: number;
}

/**
 * Destroys connections whose client has accepted no byte of a pending response for `stallMs`, and
 * for STALL_AT_CLOSE_MS once the server is closing (`closing()`). Nothing bounds sending otherwise: `requestTimeout` ends when the request has arrived, and
 * `server.setTimeout` would count a slow handler as inactivity and is reset to 0 on a kept-alive
 * socket's next request anyway. No work per request: one map entry per connection and one sweep
 * over them on an interval.
 *
 * The sweep reads the raw TCP socket (the 'connection' event's, also under HTTPS) at its handle:
 * `bytesWritten` is what was handed to libuv, `writeQueueSize` what libuv still holds because the
 * kernel's send buffer is full. Their difference moves as soon as the client reads, also within one
 * big write; the socket's own `bytesWritten - writableLength` moves only when a whole write is done
 * (a 10 MB body would have to be read within the limit), and under HTTPS the raw socket's
 * `writableLength` stays 0 (TLS writes to the handle directly), so it serves only as a fallback.
 * The kernel takes more once about a third of its send buffer has drained (up to 4 MB on Linux),
 * so a client is seen reading each ~1.5 MB: at 30 s, any client faster than ~50 KB/s.
 *
 * A stalled connection is reset (`resetAndDestroy`), not closed: closed, it left the process but
 * not the kernel, which kept it in FIN-WAIT-1 with the unsent answer in its send buffer (~3.9 MB)
 * for as long as the client kept its end open and unread (10 such clients: 38 MB of the node's
 * socket memory for over 100 s, until they left). The answer is abandoned either way.
 */
function closeSendStalls(server: http.Server, stallMs: number, onStall: (() => void) | undefined): { closing(): void } {
  const sockets = new Map<Socket, Progress>();
  function forget(this: Socket) {
    sockets.delete(this);
  }
  server.on('connection', (socket: Socket) => {
    sockets.set(socket, { sent: -1, since: 0 }); // the first sweep starts it
    socket.once('close', forget);
  });
  const sweep = () => {
    const now = Date.now();
    for (const [socket, progress] of sockets) {
      const handle = (socket as { _handle?: { bytesWritten?: unknown; writeQueueSize?: unknown } | null })._handle;
      if (!handle) continue; // closing
      let sent: number;
      let pending = socket.writableLength;
      if (typeof handle.bytesWritten === 'number' && typeof handle.writeQueueSize === 'number') {
        sent = handle.bytesWritten - handle.writeQueueSize;
        pending += handle.writeQueueSize;
      } else sent = socket.bytesWritten - socket.writableLength;
      if (pending === 0 || sent !== progress.sent) {
        progress.sent = sent;
        progress.since = now;
      } else if (now - progress.since >= stallMs) {
        sockets.delete(socket);
        socket.resetAndDestroy();
        onStall?.();
      }
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const sweepEvery = () => {
    clearInterval(timer);
    timer = setInterval(sweep, Math.max(100, Math.min(1000, stallMs / 4))).unref();
  };
  server.on('listening', sweepEvery);
  server.on('close', () => clearInterval(timer));
  return {
    closing() {
      if (stallMs <= STALL_AT_CLOSE_MS) return;
      stallMs = STALL_AT_CLOSE_MS;
      sweepEvery();
    },
  };
}
