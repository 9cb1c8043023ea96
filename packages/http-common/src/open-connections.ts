import type http from 'node:http';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** What Node sets on the socket a response holds, from the request's headers to the response's end. */
type HttpSocket = Socket & { _httpMessage?: ServerResponse | null };

/**
 * A server's open connections, oldest first, each with the socket HTTP runs on (the TCP socket, or
 * under HTTPS the TLS socket once its handshake is done), and by the client's address. One is
 * *unstarted* while it has no request in flight: a TLS handshake, a client that has not sent a
 * whole request's headers, or a kept-alive connection between requests. Nothing a client sent on
 * an unstarted connection has been handed to a route, so closing one loses no request.
 */
export class OpenConnections {
  private readonly sockets = new Map<Socket, HttpSocket | undefined>();
  private readonly byAddress = new Map<string, Set<Socket>>();

  constructor(server: http.Server, tls: boolean) {
    server.on('connection', (socket: Socket) => {
      const address = socket.remoteAddress ?? '';
      this.sockets.set(socket, tls ? undefined : socket);
      let fromAddress = this.byAddress.get(address);
      if (!fromAddress) this.byAddress.set(address, (fromAddress = new Set()));
      fromAddress.add(socket);
      socket.once('close', () => {
        this.sockets.delete(socket);
        fromAddress.delete(socket);
        if (fromAddress.size === 0) this.byAddress.delete(address);
      });
    });
    if (tls) {
      server.on('secureConnection', (socket: TLSSocket) => {
        const tcp = (socket as TLSSocket & { _parent?: Socket })._parent;
        if (tcp && this.sockets.has(tcp)) this.sockets.set(tcp, socket);
      });
    }
  }

  get size(): number {
    return this.sockets.size;
  }

  /** The client address that holds the most open connections. */
  busiestAddress(): string | undefined {
    let busiest: string | undefined;
    let most = 0;
    for (const [address, sockets] of this.byAddress) {
      if (sockets.size > most) [busiest, most] = [address, sockets.size];
    }
    return busiest;
  }

  /** The oldest unstarted connection of `address`, if it has one. */
  oldestUnstarted(address: string): Socket | undefined {
    for (const socket of this.unstarted(address)) return socket;
    return undefined;
  }

  /**
   * The connections whose request is still arriving (its body not all read) with no answer begun,
   * as the socket to destroy: no route has acted on such a request, whose handler runs once the body
   * is in.
   */
  *arriving(): Generator<Socket> {
    for (const [tcp, socket] of this.sockets) {
      const response = socket?._httpMessage;
      if (response && !response.headersSent && !response.req.complete && !tcp.destroyed) yield socket;
    }
  }

  /** The unstarted connections, oldest first (of `address` only, if given), as the socket to destroy. */
  *unstarted(address?: string): Generator<Socket> {
    const tcps = address === undefined ? this.sockets.keys() : (this.byAddress.get(address) ?? []);
    for (const tcp of tcps) {
      const socket = this.sockets.get(tcp);
      const open = socket ?? tcp;
      if (!socket?._httpMessage && !open.destroyed) yield open;
    }
  }
}
