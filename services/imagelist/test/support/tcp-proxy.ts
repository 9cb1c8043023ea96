import net from 'node:net';
import tls from 'node:tls';

/** PostgreSQL's ReadyForQuery message while idle: 'Z', length 5, status 'I'. */
const READY_FOR_QUERY = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
/** The code of PostgreSQL's SSLRequest, the 8-byte message a client asks for TLS with. */
const SSL_REQUEST = 80877103;

/**
 * A loopback TCP proxy in front of the database, so a test can take the database away (every
 * connection reset, new ones refused) and bring it back, as a network outage or a restart would.
 *
 * With `tls`, it plays a PostgreSQL server with ssl on: it answers each client's SSLRequest with
 * 'S', ends TLS with that certificate, and passes the decrypted stream to the database (whose own
 * ssl may be off). A client that asks for no TLS is cut off.
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly pairs = new Set<[client: net.Socket, upstream: net.Socket]>();
  private frozen = false;
  private resetAfterReadyMs: number | undefined;
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
    private readonly opts: { tls?: { cert: Buffer; key: Buffer } } = {},
  ) {}

  async start(): Promise<this> {
    this.server = net.createServer((socket) => {
      this.track(socket);
      socket.on('error', () => {}); // the pair's streams handle it
      const tlsOptions = this.opts.tls;
      if (!tlsOptions) return this.pass(socket, socket);
      const sslRequest = () => {
        const request = socket.read(8) as Buffer | null;
        if (!request) return void socket.once('readable', sslRequest);
        if (request.length < 8 || request.readInt32BE(0) !== 8 || request.readInt32BE(4) !== SSL_REQUEST) return void socket.destroy();
        socket.write('S');
        this.pass(socket, new tls.TLSSocket(socket, { isServer: true, ...tlsOptions }));
      };
      socket.once('readable', sslRequest);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
  }

  /** Passes `client` (`socket` itself, or TLS on it) to and from a new connection to the database. */
  private pass(socket: net.Socket, client: net.Socket): void {
    const upstream = net.connect(this.targetPort, this.targetHost);
    this.track(upstream);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    client.on('close', () => this.pairs.delete(pair));
    for (const s of [client, upstream]) {
      s.on('error', () => {
        if (!this.pairs.has(pair)) return; // blackholed: the client must never learn
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
    if (this.frozen) for (const s of [client, upstream]) s.pause();
    if (this.resetAfterReadyMs !== undefined) {
      const ms = this.resetAfterReadyMs;
      // Everything up to the first ReadyForQuery passes; nothing after it does, until the reset.
      upstream.unpipe(client);
      const watch = (data: Buffer) => {
        const at = data.indexOf(READY_FOR_QUERY);
        if (at < 0) return void client.write(data);
        upstream.off('data', watch);
        client.write(data.subarray(0, at + READY_FOR_QUERY.length));
        upstream.on('data', () => {});
        setTimeout(() => {
          socket.resetAndDestroy();
          upstream.destroy();
        }, ms);
      };
      upstream.on('data', watch).resume();
    }
  }

  /** The outage: resets every open connection and refuses new ones. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const s of this.sockets) s.resetAndDestroy();
    await closed;
  }

  /**
   * A silent network: connections stay open, but nothing passes either way (a stalled proxy or
   * half-open TCP), and new connections are accepted but get no answer.
   */
  freeze(): void {
    this.frozen = true;
    for (const s of this.sockets) s.pause();
  }

  /**
   * The host of every open connection vanishes (a failover, a partition): what the client sends is
   * dropped and nothing comes back, forever, and the connection is never closed. New connections
   * pass, as to the new host.
   */
  blackhole(): void {
    for (const pair of this.pairs) {
      const [client, upstream] = pair;
      this.pairs.delete(pair);
      client.unpipe(upstream);
      upstream.unpipe(client);
      upstream.destroy();
      client.removeAllListeners('end');
      client.on('data', () => {}).on('error', () => {});
      client.resume();
    }
  }

  /**
   * New connections are reset `ms` after the server first says it is ready for a query, and
   * nothing the server sends after that passes: a database that goes away while a client sets up
   * its connection (and sends its first query).
   * `undefined` lets them pass again.
   */
  resetNewAfterReady(ms: number | undefined): void {
    this.resetAfterReadyMs = ms;
  }

  thaw(): void {
    this.frozen = false;
    for (const s of this.sockets) s.resume();
  }

  /** The database is back, on the same port. */
  restore(): Promise<this> {
    return this.start();
  }

  stop(): Promise<void> {
    return this.cut();
  }
}

/** Rewrites a PostgreSQL URL to go through the proxy. */
export function viaProxy(url: string, proxy: TcpProxy): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return u.toString();
}
