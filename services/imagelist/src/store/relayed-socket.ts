import type net from 'node:net';
import { Duplex } from 'node:stream';

/**
 * `socket` behind a plain stream, for TLS to run on: Node's TLS on a net.Socket reads and writes its
 * handle directly, past the socket's `write` and 'data', but on any other stream it goes through
 * them. Everything the stream carries passes through `socket.write` and the socket's 'data'.
 *
 * The relay ends as a net.Socket does, for postgres.js's sake:
 * - Only once the socket has closed, and after the immediates already queued. postgres.js sends a
 *   small message from a setImmediate, and when its connection closes first it cancels that
 *   immediate without forgetting it: the connection, reconnected, never sends again (every connect
 *   then timed out, for good). A net.Socket closes in the event loop's close phase, after the
 *   immediates; a stream destroyed at its socket's 'error' closed on the next tick, before them.
 * - Its writes and its end complete at once, handed to the socket (which buffers them), or dropped
 *   when the socket is gone: the socket's error comes with the close. A write still pending when
 *   the TLS socket closed failed (EPIPE, or ECANCELED from Node's stream wrapper) as an 'error'
 *   after postgres.js had removed its listeners, and ended the process. postgres.js writes a
 *   query's messages and waits for the answer, so what the socket buffers stays small.
 */
export function relayedSocket(socket: net.Socket): Duplex {
  let failure: Error | undefined;
  const relay = new Duplex({
    read: () => void socket.resume(),
    write: (chunk: Buffer, _encoding, done) => {
      if (!socket.destroyed) socket.write(chunk);
      done();
    },
    final: (done) => {
      socket.end();
      done();
    },
    destroy: (error, done) => {
      socket.destroy(error ?? undefined);
      done(error);
    },
  });
  socket.on('data', (data: Buffer) => relay.push(data) || socket.pause());
  socket.on('end', () => relay.push(null));
  socket.on('error', (error) => (failure ??= error));
  socket.on('close', () => setImmediate(() => relay.destroy(failure)));
  // postgres.js ends a connection it closes only while its socket says 'open'.
  Object.defineProperty(relay, 'readyState', { get: () => socket.readyState });
  return relay;
}
