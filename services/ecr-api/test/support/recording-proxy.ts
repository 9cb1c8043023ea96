import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedCall {
  /** The AWS operation: from X-Amz-Target (JSON protocols) or Action= (query protocol). */
  operation: string;
  /** Request parameters: the JSON body, or the form fields. */
  params: Record<string, unknown>;
  status: number;
  responseBody: string;
}

/**
 * An HTTP proxy in front of moto that records every AWS call the service makes: counts that do
 * not depend on the service's own metrics, and the raw answers (to know the secrets AWS handed out).
 */
export class RecordingProxy {
  readonly calls: RecordedCall[] = [];
  private server: Server | undefined;
  endpoint = '';

  /** Operations the proxy records and then never answers (a hung AWS endpoint). */
  hang: (operation: string) => boolean = () => false;

  constructor(private readonly upstream: string) {}

  async start(): Promise<this> {
    const up = new URL(this.upstream);
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const text = body.toString('utf8');
        const target = req.headers['x-amz-target'];
        let operation = typeof target === 'string' ? (target.split('.').pop() ?? target) : '';
        let params: Record<string, unknown> = {};
        if (typeof target === 'string') {
          params = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        } else {
          params = Object.fromEntries(new URLSearchParams(text));
          operation = typeof params.Action === 'string' ? params.Action : `${req.method} ${req.url}`;
        }
        if (this.hang(operation)) {
          this.calls.push({ operation, params, status: 0, responseBody: '' });
          return;
        }
        const upstreamReq = request(
          { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
          (upstreamRes) => {
            const out: Buffer[] = [];
            upstreamRes.on('data', (c: Buffer) => out.push(c));
            upstreamRes.on('end', () => {
              const responseBody = Buffer.concat(out);
              this.calls.push({ operation, params, status: upstreamRes.statusCode ?? 0, responseBody: responseBody.toString('utf8') });
              res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
              res.end(responseBody);
            });
          },
        );
        upstreamReq.on('error', () => {
          res.writeHead(502);
          res.end();
        });
        upstreamReq.end(body);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  count(operation: string): number {
    return this.calls.filter((c) => c.operation === operation).length;
  }

  operations(): string[] {
    return this.calls.map((c) => c.operation);
  }

  reset(): void {
    this.calls.length = 0;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
