import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AwsCall } from './aws-call.js';
import { AwsProxy } from './aws-proxy.js';

/**
 * An HTTP proxy in front of moto that, once told to, refuses every call signed with an access key
 * it has seen so far as AWS refuses expired assumed-role credentials (ExpiredTokenException for
 * ECR's JSON protocol, ExpiredToken for IAM's query protocol); AssumeRole and calls signed with new
 * keys go through to moto.
 */
export class ExpiringProxy extends AwsProxy {
  private readonly seen = new Set<string>();
  private readonly expired = new Set<string>();
  readonly operations: string[] = [];

  /** Every key seen so far is refused from now on. */
  expireSeenKeys(): void {
    for (const key of this.seen) this.expired.add(key);
  }

  count(operation: string): number {
    return this.operations.filter((o) => o === operation).length;
  }

  protected intercept({ operation, protocol }: AwsCall, res: ServerResponse, req: IncomingMessage): boolean {
    this.operations.push(operation);
    const key = /Credential=([A-Z0-9]+)\//.exec(req.headers.authorization ?? '')?.[1];
    if (!key || operation === 'AssumeRole') return false;
    this.seen.add(key);
    if (!this.expired.has(key)) return false;
    const message = 'The security token included in the request is expired';
    if (protocol === 'json') {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': 'ExpiredTokenException' });
      res.end(JSON.stringify({ __type: 'ExpiredTokenException', message }));
    } else {
      res.writeHead(403, { 'content-type': 'text/xml' });
      res.end(
        `<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>${message}</Message></Error><RequestId>expired</RequestId></ErrorResponse>`,
      );
    }
    return true;
  }
}
