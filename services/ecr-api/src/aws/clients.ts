import { ECRClient, type ECRClientConfig } from '@aws-sdk/client-ecr';
import { IAMClient } from '@aws-sdk/client-iam';
import { ResourceGroupsTaggingAPIClient } from '@aws-sdk/client-resource-groups-tagging-api';
import { STSClient } from '@aws-sdk/client-sts';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { outcomeOf, type AwsMetrics } from './metrics.js';

/** An SDK request handler: the default is Node's HTTP(S) with shared keep-alive agents; tests may inject a stub. */
export type RequestHandler = NonNullable<ECRClientConfig['requestHandler']>;

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

export interface AwsClientOptions {
  region: string;
  /** Send every call here (moto, LocalStack) instead of AWS. */
  endpoint?: string;
  /** The service's own credentials, used for STS only; absent: the default AWS credential chain. */
  baseCredentials?: AwsCredentials;
  /** Replaces the HTTP layer of every client (focused tests with canned AWS answers). */
  requestHandler?: RequestHandler;
  /** SDK attempts per call, retries of throttling and 5xx included (SDK default 3). */
  maxAttempts?: number;
  metrics: AwsMetrics;
}

/** The clients of one account, signed with that account's assumed-role credentials. */
export interface AccountClients {
  ecr: ECRClient;
  tagging: ResourceGroupsTaggingAPIClient;
  /** Repository users (IAM is global; the region only picks the partition's endpoint). */
  iam: IAMClient;
}

interface Instrumentable {
  middlewareStack: { add(middleware: never, options: { step: 'initialize'; name: string; override?: boolean }): void };
}

/** Counts and times every call of a client by service, operation and outcome. */
function instrument(client: Instrumentable, service: string, metrics: AwsMetrics): void {
  const middleware =
    <T>(next: (args: unknown) => Promise<T>, context: { commandName?: string }) =>
    async (args: unknown): Promise<T> => {
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
  client.middlewareStack.add(middleware as never, { step: 'initialize', name: 'ecrApiMetrics', override: true });
}

/**
 * Builds the SDK clients. All of them share one pair of keep-alive agents, so replacing an
 * account's clients when its credentials are refreshed costs no new connection pool.
 */
export class AwsClientFactory {
  private readonly httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  private readonly httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 64 });
  private stsClient: STSClient | undefined;

  constructor(private readonly opts: AwsClientOptions) {}

  private common() {
    const { region, endpoint, requestHandler, maxAttempts } = this.opts;
    return {
      region,
      ...(endpoint ? { endpoint } : {}),
      ...(maxAttempts ? { maxAttempts } : {}),
      requestHandler: requestHandler ?? {
        httpAgent: this.httpAgent,
        httpsAgent: this.httpsAgent,
        connectionTimeout: 5_000,
        requestTimeout: 20_000,
      },
    };
  }

  /** The STS client, with the service's own credentials. */
  sts(): STSClient {
    if (!this.stsClient) {
      const credentials = this.opts.baseCredentials;
      this.stsClient = new STSClient({ ...this.common(), ...(credentials ? { credentials } : {}) });
      instrument(this.stsClient as unknown as Instrumentable, 'sts', this.opts.metrics);
    }
    return this.stsClient;
  }

  forAccount(credentials: AwsCredentials): AccountClients {
    const ecr = new ECRClient({ ...this.common(), credentials });
    const tagging = new ResourceGroupsTaggingAPIClient({ ...this.common(), credentials });
    instrument(ecr as unknown as Instrumentable, 'ecr', this.opts.metrics);
    instrument(tagging as unknown as Instrumentable, 'tagging', this.opts.metrics);
    const iam = new IAMClient({ ...this.common(), credentials });
    instrument(iam as unknown as Instrumentable, 'iam', this.opts.metrics);
    return { ecr, tagging, iam };
  }

  /** Closes the shared connection pools (app shutdown). */
  destroy(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    // The STS client may run on the default chain's own handler; the per-account clients share ours.
    this.stsClient?.destroy();
  }
}
