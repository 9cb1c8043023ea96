import net from 'node:net';

/** What postgres.js hands its `socket` option: its parsed options. */
export interface SocketTarget {
  host: string[];
  port: number[];
  path?: string | false;
  /** false, or how to run TLS (an sslmode, tls.connect options): postgres.js then runs it on our socket */
  ssl?: unknown;
  /** seconds */
  keep_alive?: number | null | false;
}

/**
 * How the server is named for TLS, on the socket (or the stream) postgres.js runs TLS on.
 *
 * postgres.js names it by `host` for SNI and gives it to tls.connect as `servername`, but only for
 * a host name. For an IP address Node's TLS checks the certificate (verify-full) against the
 * socket's `_host`, which net.Socket sets only for a name it had to look up, else against
 * "localhost": to 10.0.0.5, a certificate for localhost would pass and one for 10.0.0.5 would not.
 */
export type ServerName = { host: string; port: number; _host: string } | Record<string, never>;

/**
 * Connects as postgres.js would, to a unix `path` or to the `attempt`-th of the hosts in turn, and
 * says how the server is named for TLS. Writes before the connection is up wait in the socket.
 */
export function connectToTarget(target: SocketTarget, attempt: number): { socket: net.Socket; name: ServerName } {
  const socket = new net.Socket();
  if (target.path) return { socket: socket.connect(target.path), name: {} };
  const i = attempt % target.port.length;
  const [host, port] = [target.host[i]!, target.port[i]!];
  socket.connect(port, host);
  return { socket, name: { host, port, _host: host } };
}

/**
 * postgres.js's `socket` option for a connection that needs nothing else of ours: postgres.js's own
 * connecting, with the server named for TLS by its address too (see ServerName).
 */
export function hostSocket(): (target: SocketTarget) => net.Socket {
  let attempt = 0;
  return (target) => {
    const { socket, name } = connectToTarget(target, attempt++);
    return Object.assign(socket, name);
  };
}
