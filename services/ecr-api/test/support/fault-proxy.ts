import type { ServerResponse } from 'node:http';
import type { AwsCall } from './aws-call.js';
import { AwsProxy } from './aws-proxy.js';

export interface Fault {
  /** The AWS error code, e.g. ServerException or LimitExceeded. */
  code: string;
  message?: string;
  status?: number;
  /** Fail this many matching calls, then let them through (default: every one). */
  times?: number;
  /** Let this many matching calls through before failing (default 0). */
  skip?: number;
  /** Answer this body instead of an AWS error (a proxy's or load balancer's page). */
  raw?: { contentType: string; body: string };
  /** Answer it this long after the call arrived (the call counts as failed when it arrives). */
  delayMs?: number;
  /** Answer it once this settles (and delayMs has passed): a call held until the test says. */
  until?: Promise<unknown>;
  /** Reset the connection instead of answering (`code` is then only a label). */
  reset?: boolean;
  /** Let the call through to moto first, then answer the fault instead of moto's answer: done, answered as failed. */
  applied?: boolean;
}

/** A call of an operation held by the proxy until the test releases it. */
export interface Gate {
  /** Settles once the call has reached the proxy (and is held there). */
  readonly arrived: Promise<void>;
  /** Lets the call through to moto. */
  release(): void;
}

/**
 * An HTTP proxy in front of moto that fails chosen AWS operations with an AWS error, in the wire
 * format of the operation's protocol (JSON for ECR, XML for the IAM and STS query protocol), and
 * records every operation: a real AWS fault in the middle of a multi-call request, the rest real.
 */
export class FaultProxy extends AwsProxy {
  readonly operations: string[] = [];
  private readonly faults = new Map<string, Fault & { left: number; skip: number }>();
  private readonly delays = new Map<string, number>();
  private readonly gates = new Map<string, { skip: number; arrive: () => void; released: Promise<void> }>();
  /** Calls let through whose answer is to be this fault (`applied`). */
  private readonly afterwards = new Map<ServerResponse, { fault: Fault; protocol: AwsCall['protocol'] }>();
  /** Every gate's release, held call or not: clear() lets them all through. */
  private readonly releases: (() => void)[] = [];

  fail(operation: string, fault: Fault): void {
    this.faults.set(operation, { ...fault, left: fault.times ?? Number.POSITIVE_INFINITY, skip: fault.skip ?? 0 });
  }

  /** Holds every call of `operation` for `ms` before failing it or letting it through (a slow AWS). */
  delay(operation: string, ms: number): void {
    this.delays.set(operation, ms);
  }

  /**
   * Holds the next call of `operation` (after `skip` others go through) until the gate is
   * released, then lets it through: one request's call made to wait for another request's.
   */
  hold(operation: string, opts: { skip?: number } = {}): Gate {
    let arrive!: () => void;
    let release!: () => void;
    const arrived = new Promise<void>((resolve) => (arrive = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.gates.set(operation, { skip: opts.skip ?? 0, arrive, released });
    this.releases.push(release);
    return { arrived, release };
  }

  /** Forgets the faults, delays and recorded operations, and lets every held call through. */
  clear(): void {
    this.faults.clear();
    this.delays.clear();
    this.gates.clear();
    for (const release of this.releases.splice(0)) release();
    this.operations.length = 0;
  }

  protected override holdFor({ operation }: AwsCall): number | Promise<unknown> {
    const gate = this.gates.get(operation);
    if (gate && gate.skip > 0) gate.skip--;
    else if (gate) {
      this.gates.delete(operation);
      gate.arrive();
      return gate.released;
    }
    return this.delays.get(operation) ?? 0;
  }

  count(operation: string): number {
    return this.operations.filter((o) => o === operation).length;
  }

  protected intercept({ operation, protocol }: AwsCall, res: ServerResponse): boolean {
    this.operations.push(operation);
    const fault = this.faults.get(operation);
    if (fault && fault.skip > 0) fault.skip--;
    else if (fault && fault.left > 0) {
      fault.left--;
      if (fault.applied) {
        this.afterwards.set(res, { fault, protocol });
        return false;
      }
      const answer = () => {
        if (fault.delayMs) setTimeout(() => this.answer(fault, protocol, res), fault.delayMs);
        else this.answer(fault, protocol, res);
      };
      if (fault.until) void fault.until.finally(answer);
      else answer();
      return true;
    }
    return false;
  }

  protected override deliver(_call: AwsCall, res: ServerResponse): boolean {
    const after = this.afterwards.get(res);
    if (!after) return true;
    this.afterwards.delete(res);
    this.answer(after.fault, after.protocol, res);
    return false;
  }

  private answer(fault: Fault, protocol: AwsCall['protocol'], res: ServerResponse): void {
    const message = fault.message ?? `${fault.code} (injected)`;
    if (fault.reset) {
      res.socket?.resetAndDestroy();
    } else if (fault.raw) {
      res.writeHead(fault.status ?? 503, { 'content-type': fault.raw.contentType });
      res.end(fault.raw.body);
    } else if (protocol === 'json') {
      res.writeHead(fault.status ?? 400, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': fault.code });
      res.end(JSON.stringify({ __type: fault.code, message }));
    } else {
      res.writeHead(fault.status ?? 400, { 'content-type': 'text/xml' });
      res.end(
        `<ErrorResponse><Error><Type>Sender</Type><Code>${fault.code}</Code><Message>${message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>`,
      );
    }
  }
}
