import { ECRClient } from '@aws-sdk/client-ecr';
import { IAMClient } from '@aws-sdk/client-iam';
import { ResourceGroupsTaggingAPIClient } from '@aws-sdk/client-resource-groups-tagging-api';
import { STSClient } from '@aws-sdk/client-sts';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import type { FinalizeRequestMiddleware, HttpHandlerOptions, InitializeMiddleware, MetadataBearer, MiddlewareStack } from '@smithy/types';
import { currentDeadline, Deadline, withDeadline } from './deadline.js';
import { outcomeOf, type AwsMetrics } from './metrics.js';
import { pooledHandler, type AwsService } from './pools.js';
import { retriedDeletesAreDone } from './retried-deletes.js';
import { mayHaveTakenEffect } from './unanswered.js';

/** The SDK's HTTP layer: Node's HTTP(S) with keep-alive agents per service; focused tests inject canned answers. */
export type HttpHandler = Pick<NodeHttpHandler, 'handle' | 'updateHttpClientConfig' | 'httpHandlerConfigs' | 'destroy'>;

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

export interface AttemptTimeouts {
  connectionTimeout: number;
  requestTimeout: number;
}

/**
 * Timeouts of one attempt of one AWS call. A call makes up to `maxAttempts` attempts; the request's
 * deadline (deadline.ts, --aws-deadline) bounds them all together.
 * - connect 3 s: AWS endpoints accept in milliseconds; a silent SYN is a network fault to retry.
 * - answer 10 s: ECR and STS answer in well under a second. The SDK only logs a warning when this
 *   passes unless `throwOnRequestTimeout` is set, so it is set: the attempt fails and is retried.
 */
const ATTEMPT_TIMEOUTS: AttemptTimeouts = { connectionTimeout: 3_000, requestTimeout: 10_000 };

export interface AwsClientOptions {
  region: string;
  /** Send every call here (moto, LocalStack) instead of AWS. */
  endpoint?: string;
  /** The service's own credentials, used for STS only; absent: the default AWS credential chain. */
  baseCredentials?: AwsCredentials;
  /** Replaces the HTTP layer of every client, all services alike (focused tests with canned AWS answers). */
  httpHandler?: HttpHandler;
  /** SDK attempts per call, retries of throttling and 5xx included (SDK default 3). */
  maxAttempts?: number;
  /** Replaces ATTEMPT_TIMEOUTS (tests: a real SDK timeout without waiting 10 s). */
  attemptTimeouts?: Partial<AttemptTimeouts>;
  /** The deadline of a call made outside any client request (none today; a safety net). */
  deadlineMs: number;
  metrics: AwsMetrics;
}

/**
 * The clients of one account, signed with that account's assumed-role credentials. Each is built
 * on first use: a client holds ~20-24 KB of heap, and most accounts only ever use ECR. Read them
 * one by one: a spread (`{ ...clients }`) or a destructuring of all three builds them all.
 */
export interface AccountClients {
  readonly ecr: ECRClient;
  /** GetResources (the `tagging` list strategy). */
  readonly tagging: ResourceGroupsTaggingAPIClient;
  /** Repository users (IAM is global; the region only picks the partition's endpoint). */
  readonly iam: IAMClient;
}

/** One of an account's clients, as `forAccount`'s `onCreate` gets it. */
export type AccountClient = AccountClients[keyof AccountClients];

interface Client<I extends object, O extends MetadataBearer> {
  middlewareStack: MiddlewareStack<I, O>;
}

/**
 * Bounds every call of a client, retries and backoff included, by the current deadline. It wraps
 * the whole call (initialize step, high priority: outside the SDK's retry loop); the HTTP handler
 * below aborts the attempt in flight with the same signal, so no socket is left waiting.
 */
function bound<I extends object, O extends MetadataBearer>(client: Client<I, O>, fallbackMs: number): void {
  const middleware: InitializeMiddleware<I, O> = (next) => (args) => {
    const deadline = currentDeadline();
    // A call made after the deadline is not sent at all (a scan's remaining repositories).
    if (deadline?.passed) return Promise.reject(deadline.signal.reason as Error);
    if (deadline) return deadline.race(next(args));
    const own = Deadline.in(fallbackMs);
    return withDeadline(own, () => own.race(next(args))).finally(() => own.dispose());
  };
  client.middlewareStack.add(middleware, { step: 'initialize', priority: 'high', name: 'ecrApiDeadline', override: true });
}

/**
 * Calls that must not be sent twice: a second CreateRepository or CreateUser after an attempt whose
 * answer was lost fails with "already exists" although the first one created it, and a second
 * CreateAccessKey makes a second key. The SDK retries an attempt that timed out or got a 5xx; for
 * these only AWS's refusals (throttling) are retried, and the caller (steps.ts) learns that the
 * call may have taken effect.
 */
const SEND_ONCE = new Set(['CreateRepositoryCommand', 'CreateUserCommand', 'CreateAccessKeyCommand']);

/** Carries an attempt's error past the SDK's retry loop, which retries nothing it cannot classify. */
class NotRetried extends Error {
  constructor(readonly attempt: unknown) {
    super('an attempt that may have taken effect is not retried');
  }
}

function sendOnce<I extends object, O extends MetadataBearer>(client: Client<I, O>): void {
  const inside: FinalizeRequestMiddleware<I, O> = (next, context) => async (args) => {
    try {
      return await next(args);
    } catch (err) {
      if (SEND_ONCE.has(context.commandName ?? '') && mayHaveTakenEffect(err)) throw new NotRetried(err);
      throw err;
    }
  };
  const outside: FinalizeRequestMiddleware<I, O> = (next) => async (args) => {
    try {
      return await next(args);
    } catch (err) {
      throw err instanceof NotRetried ? err.attempt : err;
    }
  };
  client.middlewareStack.addRelativeTo(inside, { relation: 'after', toMiddleware: 'retryMiddleware', name: 'ecrApiSendOnce' });
  client.middlewareStack.addRelativeTo(outside, { relation: 'before', toMiddleware: 'retryMiddleware', name: 'ecrApiSendOnceError' });
}

/** Counts and times every call of a client by service, operation and outcome. */
function instrument<I extends object, O extends MetadataBearer>(client: Client<I, O>, service: string, metrics: AwsMetrics): void {
  const middleware: InitializeMiddleware<I, O> = (next, context) => async (args) => {
    const operation = (context.commandName ?? 'unknown').replace(/Command$/, '');
    const stop = metrics.duration.startTimer({ service, operation });
    try {
      const output = await next(args);
      metrics.calls.inc({ service, operation, outcome: 'success' });
      return output;
    } catch (err) {
      metrics.calls.inc({ service, operation, outcome: outcomeOf(err) });
      throw err;
    } finally {
      stop();
    }
  };
  client.middlewareStack.add(middleware, { step: 'initialize', name: 'ecrApiMetrics', override: true });
}

/** An HTTP handler that aborts its request when the current deadline passes. */
class DeadlineHttpHandler implements HttpHandler {
  constructor(private readonly inner: HttpHandler) {}

  handle(...[request, options]: Parameters<HttpHandler['handle']>): ReturnType<HttpHandler['handle']> {
    const deadline = currentDeadline();
    const withSignal: HttpHandlerOptions = deadline ? { ...options, abortSignal: deadline.signal } : (options ?? {});
    return this.inner.handle(request, withSignal);
  }
  updateHttpClientConfig(...args: Parameters<HttpHandler['updateHttpClientConfig']>): void {
    this.inner.updateHttpClientConfig(...args);
  }
  httpHandlerConfigs(): ReturnType<HttpHandler['httpHandlerConfigs']> {
    return this.inner.httpHandlerConfigs();
  }
  destroy(): void {
    this.inner.destroy();
  }
}

/**
 * Builds the SDK clients. The clients of one AWS service share one HTTP handler and its pair of
 * keep-alive agents (pools.ts), so replacing an account's clients when its credentials are
 * refreshed costs no new connection pool, and one service's hung calls cannot take the sockets
 * another service's calls need.
 */
export class AwsClientFactory {
  private readonly handlers = new Map<AwsService, DeadlineHttpHandler>();
  private readonly injected: DeadlineHttpHandler | undefined;
  private stsClient: STSClient | undefined;

  constructor(private readonly opts: AwsClientOptions) {
    this.injected = opts.httpHandler && new DeadlineHttpHandler(opts.httpHandler);
  }

  private handler(service: AwsService): DeadlineHttpHandler {
    if (this.injected) return this.injected;
    let handler = this.handlers.get(service);
    if (!handler) {
      handler = new DeadlineHttpHandler(pooledHandler({ ...ATTEMPT_TIMEOUTS, ...this.opts.attemptTimeouts }));
      this.handlers.set(service, handler);
    }
    return handler;
  }

  private common(service: AwsService) {
    const { region, endpoint, maxAttempts } = this.opts;
    return {
      region,
      ...(endpoint ? { endpoint } : {}),
      ...(maxAttempts ? { maxAttempts } : {}),
      requestHandler: this.handler(service),
    };
  }

  private prepare<I extends object, O extends MetadataBearer>(client: Client<I, O>, service: AwsService): void {
    bound(client, this.opts.deadlineMs);
    instrument(client, service, this.opts.metrics);
    sendOnce(client);
    retriedDeletesAreDone(client.middlewareStack);
  }

  /** The STS client, with the service's own credentials. */
  sts(): STSClient {
    if (!this.stsClient) {
      const credentials = this.opts.baseCredentials;
      this.stsClient = new STSClient({ ...this.common('sts'), ...(credentials ? { credentials } : {}) });
      this.prepare(this.stsClient, 'sts');
    }
    return this.stsClient;
  }

  /**
   * The clients of an account, each built and prepared on first use; `onCreate` then gets it (the
   * credential cache adds its middleware there).
   */
  forAccount(credentials: AwsCredentials, onCreate?: (client: AccountClient) => void): AccountClients {
    type Config = ReturnType<typeof this.common> & { credentials: AwsCredentials };
    const once = <C extends AccountClient>(service: AwsService, build: (config: Config) => C): (() => C) => {
      let client: C | undefined;
      return () => {
        if (!client) {
          client = build({ ...this.common(service), credentials });
          this.prepare(client, service);
          onCreate?.(client);
        }
        return client;
      };
    };
    const ecr = once('ecr', (config) => new ECRClient(config));
    const tagging = once('tagging', (config) => new ResourceGroupsTaggingAPIClient(config));
    const iam = once('iam', (config) => new IAMClient(config));
    return {
      get ecr() {
        return ecr();
      },
      get tagging() {
        return tagging();
      },
      get iam() {
        return iam();
      },
    };
  }

  /** Closes the connection pools (app shutdown). */
  destroy(): void {
    this.injected?.destroy();
    for (const handler of this.handlers.values()) handler.destroy();
    // The STS client may run on the default chain's own handler; the per-account clients share ours.
    this.stsClient?.destroy();
  }
}
