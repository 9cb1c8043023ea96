import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeAwsCall, type AwsCall } from './aws-call.js';

/**
 * An HTTP proxy in front of moto that names the AWS operation of every call the service makes and
 * forwards it. Subclasses decide what to do with a call before it goes on (answer it themselves,
 * or never answer) and what to keep of moto's answer.
 */
export abstract class AwsProxy {
  private server: Server | undefined;
  endpoint = '';

  constructor(private readonly upstream: string) {}

  /** Answers the call (or leaves it hanging) instead of moto: true; lets it through: false. */
  protected abstract intercept(call: AwsCall, res: ServerResponse, req: IncomingMessage): boolean;

  /** Whether moto's answer to a call that went through is passed on (false: applied, answer lost). */
  protected deliver(_call: AwsCall, _res: ServerResponse): boolean {
    return true;
  }

  /** moto's answer to a call that went through. */
  protected answered(_call: AwsCall, _status: number, _body: Buffer): void {}

  /**
   * How long to hold a call before deciding what to do with it (a slow AWS): none by default; a
   * promise holds it until it settles.
   */
  protected holdFor(_call: AwsCall): number | Promise<unknown> {
    return 0;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const call = describeAwsCall(req.headers['x-amz-target'], body.toString('utf8'), `${req.method} ${req.url}`);
        const held = this.holdFor(call);
        if (typeof held !== 'number') void held.finally(() => this.handle(call, body, req, res));
        else if (held > 0) setTimeout(() => this.handle(call, body, req, res), held);
        else this.handle(call, body, req, res);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  private handle(call: AwsCall, body: Buffer, req: IncomingMessage, res: ServerResponse): void {
    if (this.intercept(call, res, req)) return;
    const up = new URL(this.upstream);
    const upstreamReq = request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
      (upstreamRes) => {
        const out: Buffer[] = [];
        upstreamRes.on('data', (c: Buffer) => out.push(c));
        upstreamRes.on('end', () => {
          const answer = Buffer.concat(out);
          this.answered(call, upstreamRes.statusCode ?? 0, answer);
          if (!this.deliver(call, res)) return;
          res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
          res.end(answer);
        });
      },
    );
    upstreamReq.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    upstreamReq.end(body);
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
