import net from 'node:net';

/** What postgres.js hands its `socket` option: where to connect (its parsed options). */
interface Target {
  host: string[];
  port: number[];
  path?: string | false;
}

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
 * Not yet under TLS: Node's TLS then writes to this socket's handle directly, past `write`, so no
 * statement is seen and the connection is never destroyed (nor wrongly).
 */
export function unansweredSocket(silenceMs: number): (target: Target) => net.Socket {
  let next = 0;
  return (target) => {
    const socket = new net.Socket();
    if (target.path) socket.connect(target.path);
    else {
      const i = next++ % target.port.length;
      socket.connect(target.port[i]!, target.host[i]!);
      // postgres.js names the server for TLS (SNI, verify-full) from this.
      Object.assign(socket, { host: target.host[i], port: target.port[i] });
    }
    destroyWhenUnanswered(socket, silenceMs);
    return socket;
  };
}

function destroyWhenUnanswered(socket: net.Socket, silenceMs: number): void {
  // Since when the socket has been owed an answer, and how much it had read by then: any byte read
  // since is an answer.
  let owedSince: number | undefined;
  let readBefore = 0;
  let timer: NodeJS.Timeout | undefined;

  const check = () => {
    timer = undefined;
    if (socket.destroyed || owedSince === undefined) return;
    if (socket.bytesRead !== readBefore) {
      owedSince = undefined;
      return;
    }
    const left = owedSince + silenceMs - Date.now();
    if (left > 0) {
      timer = setTimeout(check, left).unref();
      return;
    }
    // ETIMEDOUT: what the kernel would report once its retransmissions ran out.
    const error = new Error(`the database sent nothing for ${silenceMs} ms after a statement`);
    socket.destroy(Object.assign(error, { code: 'ETIMEDOUT' }));
  };

  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = (...args: unknown[]) => {
    if (owedSince === undefined || socket.bytesRead !== readBefore) {
      owedSince = Date.now();
      readBefore = socket.bytesRead;
    }
    timer ??= setTimeout(check, silenceMs).unref();
    return write(...args);
  };
}
