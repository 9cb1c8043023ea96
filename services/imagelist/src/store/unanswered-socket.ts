import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { connectToTarget, type SocketTarget } from './host-socket.js';
import { relayedSocket } from './relayed-socket.js';

/**
 * postgres.js's `socket` option: connects as postgres.js would (a unix `path`, or the hosts in
 * turn), and destroys a connection that sent something and then read nothing for `silenceMs`.
 *
 * A statement sent to a host that vanished without a FIN or RST (a failover, a partition) is never
 * answered: the server never got it, so its statement_timeout cannot end it, and the kernel gives up
 * only after ~15 minutes of retransmissions. Meanwhile postgres.js keeps the connection, busy, and
 * its statements keep their read turns (image-sql.ts). A live server answers every statement within
 * statement_timeout, so with `silenceMs` well above it only such a connection is destroyed, and
 * postgres.js replaces it. An idle connection owes nothing and is left alone.
 *
 * postgres.js starts its connect_timeout, and its TLS (on this socket) when asked, as soon as this
 * returns; writes before the connection is up wait in the socket.
 *
 * For TLS, postgres.js gets the socket behind a plain stream (relayed-socket.ts), since Node's TLS
 * on the socket itself would write to its handle, past `write`. The socket's byte counters, which
 * do count that traffic, are no substitute: sampled, they cannot tell a statement sent after the
 * last answer from one answered since, and destroying a socket under Node's TLS lets the TLS
 * socket raise EBADF after postgres.js stopped listening, which ends the process. The stream costs
 * TLS a pass through JavaScript per chunk (~30 µs per statement); and postgres.js's keepalive does
 * not reach the socket through it, so it is set here.
 *
 * Not caught: a statement sent before the previous one's answer arrived, then the host vanishing.
 * That answer counts as a reply, so the later statement is given up only once the connection writes
 * again and that goes unanswered.
 *
 * `silenceMs` may be a function, read as each statement is owed an answer, for a connection whose
 * statements may run for minutes only at times (migrate.ts's MigrationWatch).
 */
export function unansweredSocket(silenceMs: number | (() => number)): (target: SocketTarget) => net.Socket | Duplex {
  let attempt = 0;
  return (target) => {
    const { socket, name } = connectToTarget(target, attempt++);
    destroyWhenUnanswered(socket, typeof silenceMs === 'number' ? () => silenceMs : silenceMs);
    if (!target.ssl) return Object.assign(socket, name);
    if (target.keep_alive) socket.setKeepAlive(true, 1000 * target.keep_alive);
    return Object.assign(relayedSocket(socket), name);
  };
}

function destroyWhenUnanswered(socket: net.Socket, silenceMs: () => number): void {
  // Since when the socket has been owed an answer, for how long it may be, and how much it had read
  // by then: any byte read since is an answer.
  let owedSince: number | undefined;
  let owedMs = 0;
  let readBefore = 0;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = 0;

  const wake = (at: number) => {
    clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(check, at - Date.now()).unref();
  };

  const check = () => {
    timer = undefined;
    if (socket.destroyed || owedSince === undefined) return;
    if (socket.bytesRead !== readBefore) {
      owedSince = undefined;
      return;
    }
    const at = owedSince + owedMs;
    if (at > Date.now()) return wake(at);
    // ETIMEDOUT: what the kernel would report once its retransmissions ran out.
    const error = new Error(`the database sent nothing for ${owedMs} ms after a statement`);
    socket.destroy(Object.assign(error, { code: 'ETIMEDOUT' }));
  };

  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = (...args: unknown[]) => {
    if (owedSince === undefined || socket.bytesRead !== readBefore) {
      owedSince = Date.now();
      owedMs = silenceMs();
      readBefore = socket.bytesRead;
      // A timer set for a longer bound than this one would wake too late.
      if (timer === undefined || timerAt > owedSince + owedMs) wake(owedSince + owedMs);
    }
    return write(...args);
  };
}
