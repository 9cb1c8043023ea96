import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { HttpProblem, type FieldError } from './problem.js';

const STATUS_OF: Record<string, number> = {
  HPE_HEADER_OVERFLOW: 431,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
  ERR_HTTP_HEADERS_TIMEOUT: 408,
};

/** A problem+json answer written on the raw socket, for errors Node finds before any route runs. */
function rawProblem(status: number, detail: string, errors?: FieldError[]): string {
  const body = JSON.stringify(new HttpProblem(status, detail, errors ? { errors } : {}).toBody());
  return `HTTP/1.1 ${status} ${new HttpProblem(status, '').title}\r\nContent-Type: application/problem+json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/**
 * How long a connection answered with an error and closed on our side is kept for the client to
 * close its own: long enough to read a short answer (closing with the client's bytes unread resets
 * the connection, and a reset may discard the answer before it is read), bounded because Node
 * keeps a half-closed socket for as long as the client does. Clients that opened connections,
 * sent nothing and never closed them held every one past its 408 for good: 2,100 of them kept the
 * server over its connection limit, closing other clients' kept-alive connections.
 */
export const CLOSE_AFTER_ERROR_MS = 2000;

/** Ends the connection with `answer`, and destroys it if the client has not closed it CLOSE_AFTER_ERROR_MS later. */
export function endWith(socket: Socket, answer: string): void {
  socket.end(answer);
  const timer = setTimeout(() => socket.destroy(), CLOSE_AFTER_ERROR_MS).unref();
  socket.once('close', () => clearTimeout(timer));
}

/** The request a connection answered before its body had all arrived, while the body still arrives. */
const answeredEarly = new WeakMap<Socket, IncomingMessage>();

/**
 * Notes a request answered before its body has all arrived (a 401 before the body is read): Node
 * reads the rest of the body and discards it, and if that outlasts the request timeout, the
 * request has its answer already (clientErrorHandler).
 */
export function answeredBeforeBody(req: IncomingMessage): void {
  if (!req.complete) answeredEarly.set(req.socket, req);
}

/** The request of a connection that waits, its body unread, for the answers ahead of it to be sent. */
const waitingTurn = new WeakMap<Socket, IncomingMessage>();
/** The requests whose request timeout ran out while they waited for their turn. */
const timedOutWaiting = new WeakSet<IncomingMessage>();

/**
 * Notes a request pipelined behind answers still unsent (node-server.ts reads it in its turn), and
 * returns what to call when its turn comes: true if its request timeout ran out while it waited.
 */
export function waitsItsTurn(req: IncomingMessage): () => boolean {
  waitingTurn.set(req.socket, req);
  return () => {
    if (waitingTurn.get(req.socket) === req) waitingTurn.delete(req.socket);
    return timedOutWaiting.has(req);
  };
}

/**
 * Fastify's clientErrorHandler: malformed request lines, oversized headers, a missing Host
 * header, request and header timeouts. Answered as problem+json like every other error. HTTPS
 * sends its TLS errors here too (a handshake that timed out or failed): no answer can go over a
 * connection without TLS, so it is closed, as Node closes it when nobody listens.
 *
 * A malformed request pipelined behind one (whole) still being answered gets no answer of its own:
 * written at once, the 400 went out before the earlier answer and was read as that one's
 * (answers go in the order of the requests, RFC 9112 9.3.2). The connection closes after the
 * answer under way instead.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  const tlsFailed = /^ERR_(TLS|SSL)_/.test(err.code ?? '');
  if (!socket.writable || err.code === 'ECONNRESET' || tlsFailed) return void socket.destroy();
  // Answered before its body had all arrived, the request then timed out: a 408 would be a second
  // answer to it (a client that read the 401 took the 408 as its next request's). Close instead.
  if (answeredEarly.get(socket)?.complete === false) return void endWith(socket, '');
  // Node's request timeout runs from the request's start, and this one's body is not read until the
  // answers ahead are sent: the wait is ours, not the client's. Its timeout runs from its turn.
  const waiting = waitingTurn.get(socket);
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && waiting?.complete === false) return void timedOutWaiting.add(waiting);
  const underWay = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  // An answer under way to a request still arriving is that request's, and the error is about it.
  if (underWay && !underWay.writableFinished && underWay.req.complete) {
    underWay.once('close', () => endWith(socket, ''));
    return;
  }
  const status = STATUS_OF[err.code ?? ''] ?? 400;
  if (status === 431)
    endWith(socket, rawProblem(status, 'The request headers are too large.', [{ field: 'headers', message: 'are too large' }]));
  else endWith(socket, rawProblem(status, status === 408 ? 'The request did not arrive in time.' : 'The request is malformed.'));
}

/**
 * A problem+json answer on a response no route has seen; the connection closes after it, unless
 * `keepOpen`: then Node reads the rest of an unread body, discarding it, and the client gets the
 * answer whole (closing with a body still arriving resets the connection, and a reset may discard
 * the answer before the client reads it).
 */
export function answerProblem(
  res: ServerResponse,
  status: number,
  detail: string,
  opts: { keepOpen?: boolean; headers?: Record<string, string>; errors?: FieldError[] } = {},
): void {
  const body = JSON.stringify(new HttpProblem(status, detail, opts.errors ? { errors: opts.errors } : {}).toBody());
  res.writeHead(status, {
    'content-type': 'application/problem+json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...(opts.keepOpen ? {} : { connection: 'close' }),
    ...opts.headers,
  });
  res.end(body);
}

/**
 * Node hands a CONNECT request to 'connect' listeners and, with none, destroys the connection
 * without a word. Neither service is a proxy: answer 405 as problem+json and close.
 */
export function answerConnect(server: Server): void {
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => {});
    endWith(socket, rawProblem(405, 'CONNECT is not supported: this is not a proxy.'));
  });
}

/** Node answers an unsupported `Expect` with a bare 417; answer it as problem+json instead. */
export function answerUnsupportedExpect(server: Server): void {
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) =>
    answerProblem(res, 417, 'Only "Expect: 100-continue" is supported.', {
      errors: [{ field: 'headers.expect', message: 'must be 100-continue' }],
    }),
  );
}
