import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Fault {
  /** The AWS error code, e.g. ServerException or LimitExceeded. */
  code: string;
  message?: string;
  status?: number;
  /** Fail this many matching calls, then let them through (default: every one). */
  times?: number;
  /** Let this many matching calls through before failing (default 0). */
  skip?: number;
}

/**
 * An HTTP proxy in front of moto that fails chosen AWS operations with an AWS error, in the wire
 * format of the operation's protocol (JSON for ECR, XML for the IAM and STS query protocol), and
 * records every operation: a real AWS fault in the middle of a multi-call request, the rest real.
 */
export class FaultProxy {
  readonly operations: string[] = [];
  private readonly faults = new Map<string, Fault & { left: number; skip: number }>();
  private server: Server | undefined;
  endpoint = '';

  constructor(private readonly upstream: string) {}

  fail(operation: string, fault: Fault): void {
    this.faults.set(operation, { ...fault, left: fault.times ?? Number.POSITIVE_INFINITY, skip: fault.skip ?? 0 });
  }

  clear(): void {
    this.faults.clear();
    this.operations.length = 0;
  }

  count(operation: string): number {
    return this.operations.filter((o) => o === operation).length;
  }

  async start(): Promise<this> {
    const up = new URL(this.upstream);
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const target = req.headers['x-amz-target'];
        const json = typeof target === 'string';
        const operation = json ? (target.split('.').pop() ?? target) : (new URLSearchParams(body.toString('utf8')).get('Action') ?? '');
        this.operations.push(operation);
        const fault = this.faults.get(operation);
        if (fault && fault.skip > 0) fault.skip--;
        else if (fault && fault.left > 0) {
          fault.left--;
          const message = fault.message ?? `${fault.code} (injected)`;
          if (json) {
            res.writeHead(fault.status ?? 400, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': fault.code });
            res.end(JSON.stringify({ __type: fault.code, message }));
          } else {
            res.writeHead(fault.status ?? 400, { 'content-type': 'text/xml' });
            res.end(
              `<ErrorResponse><Error><Type>Sender</Type><Code>${fault.code}</Code><Message>${message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>`,
            );
          }
          return;
        }
        const upstreamReq = request(
          { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
          (upstreamRes) => {
            res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
            upstreamRes.pipe(res);
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

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
