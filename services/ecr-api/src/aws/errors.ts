import { HttpProblem, unavailable } from '@platform/http-common';
import { isThrottlingError, isTransientError } from '@smithy/service-error-classification';
import type { SdkError as SmithyError } from '@smithy/types';
import { AssumeRoleError, SESSION_REJECTED } from './credentials.js';
import { AwsDeadlineExceeded, ServiceClosing } from './deadline.js';

/**
 * Turns AWS SDK errors into HTTP problems: not found 404, already exists 409, invalid 400,
 * throttling and limits 429, AssumeRole denied 403, no answer (before the deadline, or within an
 * attempt's timeout) 504, the service shutting down while AWS had not answered 503, other AWS
 * failures 502; unknown errors fall through to the generic 500. Details quote AWS only for client
 * errors, and scrubbed: an answer never carries an access key, secret key or session token.
 * Throttling and network faults are recognised by the SDK's own classification (the one its
 * retry strategy uses), not by a list kept here.
 */

const NOT_FOUND = new Set([
  'RepositoryNotFoundException',
  'ImageNotFoundException',
  'LayersNotFoundException',
  'LifecyclePolicyNotFoundException',
  'RepositoryPolicyNotFoundException',
  'ScanNotFoundException',
  'UploadNotFoundException',
  'ReferencedImagesNotFoundException',
  'NoSuchEntityException', // IAM
]);
const CONFLICT = new Set([
  'RepositoryAlreadyExistsException',
  'RepositoryNotEmptyException',
  'ImageAlreadyExistsException',
  'ImageTagAlreadyExistsException',
  'LayerAlreadyExistsException',
  'LifecyclePolicyPreviewInProgressException',
  'ConcurrentModificationException',
  // IAM
  'EntityAlreadyExistsException',
  'DeleteConflictException',
  'EntityTemporarilyUnmodifiableException',
]);
const INVALID = new Set([
  'InvalidParameterException',
  'InvalidTagParameterException',
  'ValidationException',
  'ConstraintViolationException',
  'KmsException',
  'UnsupportedImageTypeException',
  'PaginationTokenExpiredException',
  // A repository cannot hold more tags: retrying does not help (the service checks the count first).
  'TooManyTagsException',
  // IAM (and STS): a parameter that fails the API's constraints, e.g. a tag key's pattern.
  'ValidationError',
  'InvalidInputException',
  'MalformedPolicyDocumentException',
  'PolicyNotAttachableException',
  'UnmodifiableEntityException',
]);
const LIMITS = new Set(['LimitExceededException']);
const DENIED = new Set(['AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation']);
/** Our own credentials were refused: a server misconfiguration, not the caller's fault. */
const OWN_CREDENTIALS = new Set([
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'ExpiredTokenException',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'MissingAuthenticationToken',
  'IncompleteSignature',
  'CredentialsProviderError',
]);

/** What an SDK error may carry; errors from below the SDK (sockets, DNS) carry `code` only. */
type SdkError = SmithyError & { code?: string };

/** Removes anything that looks like an AWS key, session token or other long opaque secret. */
export function scrub(text: string): string {
  return (
    text
      .replace(/\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b/g, '[redacted]')
      // Secret keys and session tokens are long mixed-case base64; repository names are lowercase.
      .replace(/[A-Za-z0-9+/=_-]{32,}/g, (run) => (/[A-Z]/.test(run) && /[a-z]/.test(run) && /\d/.test(run) ? '[redacted]' : run))
      .slice(0, 300)
  );
}

const awsMessage = (err: SdkError) => (err.message ? `: ${scrub(err.message)}` : '');

const isSdkError = (err: SdkError) => err.$metadata !== undefined || err.$fault !== undefined;

function throttled(detail: string, cause: unknown) {
  return new HttpProblem(429, detail, { headers: { 'retry-after': '1' }, cause });
}

const throttling = (err: SdkError) => isThrottlingError(err);
/**
 * No answer, or no connection: timeouts, resets, DNS (the SDK's "transient" errors without an HTTP
 * status). The SDK gives these `$metadata` too (attempts, no status), so they are told apart by that.
 */
const unreachable = (err: SdkError) => err.$metadata?.httpStatusCode === undefined && isTransientError(err);
/**
 * AWS accepted (or never completed) the connection and did not answer: the SDK's connect and
 * socket timeouts (TimeoutError without a code) and its answer timeout (ETIMEDOUT). The SDK names
 * resets TimeoutError too, but they keep their code (ECONNRESET, EPIPE): a fault, not a silence.
 */
const timedOut = (err: SdkError) => err.code === 'ETIMEDOUT' || (err.name === 'TimeoutError' && err.code === undefined);

/**
 * The SDK could not parse the answer (its deserializer's SyntaxError, or a cut XML body), or parsed
 * an error answer that names no AWS error: the SDK calls it `Unknown` (an HTML page parses as XML
 * for STS and IAM). AWS's own error answers always carry their code.
 */
const unreadable = (err: SdkError) =>
  err.name === 'SyntaxError' || err.name === 'Unknown' || (err.message ?? '').includes('Deserialization error');

/**
 * An answer that is not AWS's (a proxy's or load balancer's HTML page, a cut body): named by its
 * HTTP status, not the parser. A 5xx one is a passing fault, worth retrying.
 */
function notAnAwsAnswer(err: SdkError, cause: unknown, before = ''): HttpProblem {
  const status = err.$metadata?.httpStatusCode;
  const passing = status !== undefined && status >= 500;
  return new HttpProblem(
    502,
    `${before}AWS answered HTTP ${status ?? '?'} with a body that is not an AWS answer${passing ? '; retry later' : ''}.`,
    {
      cause,
      ...(passing ? { headers: { 'retry-after': '1' } } : {}),
    },
  );
}

function deadlineProblem(err: AwsDeadlineExceeded): HttpProblem {
  return new HttpProblem(504, `AWS did not answer within ${err.deadlineMs / 1000} s; retry later.`, { cause: err });
}

function classifyAssumeRole(err: AssumeRoleError): HttpProblem {
  const cause = (err.cause ?? {}) as SdkError;
  if (cause instanceof AwsDeadlineExceeded) return deadlineProblem(cause);
  const name = cause.name ?? '';
  if (DENIED.has(name) || name === 'RegionDisabledException') {
    return new HttpProblem(403, `Cannot assume the role ${err.roleArn} in account ${err.account} (${name}).`, { cause: err });
  }
  if (throttling(cause)) {
    return throttled('AWS STS is throttling AssumeRole; retry later.', err);
  }
  if (OWN_CREDENTIALS.has(name)) {
    return new HttpProblem(502, `AWS STS rejected the service's own credentials (${name}); check its AWS configuration.`, { cause: err });
  }
  // As for any AWS call: an attempt that timed out is a 504, no connection a 502 naming its code
  // (ECONNREFUSED, ENOTFOUND, ...): such errors are named Error, which says nothing.
  if (unreachable(cause)) {
    if (timedOut(cause)) {
      return new HttpProblem(
        504,
        `AWS STS did not answer AssumeRole into account ${err.account} in time (${name || cause.code}); retry later.`,
        {
          cause: err,
        },
      );
    }
    return new HttpProblem(502, `AssumeRole into account ${err.account} failed: AWS STS could not be reached (${cause.code ?? name}).`, {
      cause: err,
    });
  }
  if (isSdkError(cause) && unreadable(cause)) return notAnAwsAnswer(cause, err, `AssumeRole into account ${err.account} failed: `);
  return new HttpProblem(502, `AssumeRole into account ${err.account} failed (${name || 'error'}).`, { cause: err });
}

export function classifyAwsError(error: unknown): HttpProblem | undefined {
  if (error instanceof HttpProblem) return error;
  if (error instanceof AssumeRoleError) return classifyAssumeRole(error);
  if (error instanceof AwsDeadlineExceeded) return deadlineProblem(error);
  if (error instanceof ServiceClosing) return unavailable('The service is shutting down; retry the request.', error);
  if (typeof error !== 'object' || error === null) return undefined;
  const err = error as SdkError & { statusCode?: unknown };
  const name = err.name ?? '';
  // The client's own request failing, such as its body cut off when it disconnects (ECONNRESET,
  // "aborted"): Fastify marks those 4xx, and they are not AWS's network.
  if (!isSdkError(err) && typeof err.statusCode === 'number' && err.statusCode < 500) return undefined;

  if (NOT_FOUND.has(name)) return new HttpProblem(404, `Not found${awsMessage(err)}`, { cause: error });
  if (CONFLICT.has(name)) return new HttpProblem(409, `Conflict${awsMessage(err)}`, { cause: error });
  if (INVALID.has(name)) return new HttpProblem(400, `AWS rejected the request${awsMessage(err)}`, { cause: error });
  if (LIMITS.has(name)) return throttled(`An AWS limit was reached${awsMessage(err)}`, error);
  if (throttling(err)) return throttled('AWS is throttling requests; retry later.', error);
  if (DENIED.has(name)) {
    return new HttpProblem(403, `The assumed role may not do this (${name}); check its permissions.`, { cause: error });
  }
  // The account's assumed credentials: credentials.ts has forgotten them, the retry assumes the role again.
  if (SESSION_REJECTED.has(name)) {
    return unavailable(`AWS refused the assumed-role credentials of the account (${name}); they are renewed: retry the request.`, error);
  }
  if (OWN_CREDENTIALS.has(name)) {
    return new HttpProblem(502, `AWS rejected the service's credentials (${name}).`, { cause: error });
  }
  if (unreachable(err)) {
    if (timedOut(err)) return new HttpProblem(504, `AWS did not answer in time (${name || err.code}); retry later.`, { cause: error });
    return new HttpProblem(502, `AWS could not be reached (${err.code ?? name}).`, { cause: error });
  }
  if (isSdkError(err) && unreadable(err)) return notAnAwsAnswer(err, error);
  if (isSdkError(err)) {
    return new HttpProblem(502, `AWS failed to handle the request (${name || `HTTP ${err.$metadata?.httpStatusCode ?? '?'}`}).`, {
      cause: error,
    });
  }
  return undefined;
}
