import type { ServerResponse } from 'node:http';
import type { AwsCall } from './aws-call.js';
import { AwsProxy } from './aws-proxy.js';

export interface RecordedCall extends AwsCall {
  status: number;
  responseBody: string;
}

/**
 * An HTTP proxy in front of moto that records every AWS call the service makes: counts that do
 * not depend on the service's own metrics, and the raw answers (to know the secrets AWS handed out).
 */
export class RecordingProxy extends AwsProxy {
  readonly calls: RecordedCall[] = [];

  /** Operations the proxy records and then never answers (a hung AWS endpoint). */
  hang: (operation: string, call: AwsCall) => boolean = () => false;

  /** Operations the proxy lets moto apply and then never answers (an answer lost on the way back). */
  loseAnswer: (operation: string) => boolean = () => false;

  protected override deliver(call: AwsCall): boolean {
    return !this.loseAnswer(call.operation);
  }

  protected intercept(call: AwsCall, _res: ServerResponse): boolean {
    if (!this.hang(call.operation, call)) return false;
    this.calls.push({ ...call, status: 0, responseBody: '' });
    return true;
  }

  protected override answered(call: AwsCall, status: number, body: Buffer): void {
    this.calls.push({ ...call, status, responseBody: body.toString('utf8') });
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
}
