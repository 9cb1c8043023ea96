import type net from 'node:net';
import { Duplex } from 'node:stream';

/**
 * `socket` behind a plain stream, for TLS to run on: Node's TLS on a net.Socket reads and writes its
 * handle directly, past the socket's `write` and 'data', but on any other stream it goes through
 * them. Everything the stream carries passes through `socket.write` and the socket's 'data'.
 */
export function relayedSocket(socket: net.Socket): Duplex {
  const relay = new Duplex({
    read: () => void socket.resume(),
    write: (chunk: Buffer, _encoding, done) => void socket.write(chunk, done),
    final: (done) => void socket.end(done),
    destroy: (error, done) => {
      socket.destroy(error ?? undefined);
      done(error);
    },
  });
  socket.on('data', (data: Buffer) => relay.push(data) || socket.pause());
  socket.on('end', () => relay.push(null));
  socket.on('error', (error) => relay.destroy(error));
  socket.on('close', () => relay.destroy());
  // postgres.js ends a connection it closes only while its socket says 'open'.
  Object.defineProperty(relay, 'readyState', { get: () => socket.readyState });
  return relay;
}
