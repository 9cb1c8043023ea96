import { HttpProblem } from '@platform/http-common';
import type { MetadataBearer } from '@smithy/types';
import { AwsDeadlineExceeded, ServiceClosing } from './deadline.js';

/** Failures that happen before a request leaves this host: AWS cannot have acted on it. */
const NEVER_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * Whether a call that failed may still have taken effect in AWS: it got no answer (an attempt's
 * timeout, a reset, the request's deadline, the service closing), a 5xx, after which AWS may or
 * may not have applied it, or a 2xx whose body was cut off or could not be read (the SDK keeps the
 * status of the headers it got): AWS did it. An AWS answer of 4xx is a refusal: nothing was done.
 */
export function mayHaveTakenEffect(err: unknown): boolean {
  if (err instanceof HttpProblem) return false;
  if (err instanceof AwsDeadlineExceeded || err instanceof ServiceClosing) return true;
  const e = (err ?? {}) as Partial<MetadataBearer> & { code?: string };
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500 || (status >= 200 && status < 300);
  return !NEVER_SENT.has(e.code ?? '');
}

/**
 * How much earlier than our clock AWS may date a resource our call created: a resource found after
 * a call that got no answer counts as that call's only when created since it was sent.
 */
export const CLOCK_SLACK_MS = 60_000;

/** What `call` answers, or undefined when AWS answers the error `name`: what it asks about is not there. */
export async function ifThere<T>(name: string, call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (err) {
    if ((err as Error).name === name) return undefined;
    throw err;
  }
}

/** `call`, with the AWS error `name` taken as success: an undo whose target is already gone. */
export async function unlessGone(name: string, call: Promise<unknown>): Promise<void> {
  await ifThere(name, call);
}
