import { XAuthTokenVerifier } from '@platform/auth';
import { createApp, type App, type CreateAppOptions } from '@platform/http-common';
import type { Config } from './config.js';
import { AwsClientFactory, type HttpHandler } from './aws/clients.js';
import { AccountSessions } from './aws/credentials.js';
import { deadlinePerRequest } from './aws/deadline.js';
import { classifyAwsError } from './aws/errors.js';
import { createAwsMetrics } from './aws/metrics.js';
import { RepositoryStore } from './aws/repositories.js';
import { authMetrics } from './auth-metrics.js';
import { healthRoutes } from './routes/health.js';
import { repositoryRoutes } from './routes/repositories.js';
import type { Version } from './schemas/version.js';

export const BASE_PATH = '/v1/ecr';

/** What tests (and only tests) change about how the service reaches AWS. */
export interface AwsOverrides {
  /** Endpoint of every AWS call, e.g. moto; wins over config.aws.endpoint. */
  endpoint?: string;
  /** Replaces the HTTP layer of every SDK client: canned AWS answers for paths moto cannot emulate. */
  requestHandler?: HttpHandler;
  /** SDK attempts per call (default 3). */
  maxAttempts?: number;
  /** The credential cache's clock. */
  now?: () => number;
  /** Refresh assumed credentials this long before they expire (default 5 minutes). */
  refreshMarginMs?: number;
}

export interface BuildAppOptions {
  config: Pick<Config, 'org' | 'token' | 'aws'> & Partial<Pick<Config, 'tls'>>;
  version?: Version;
  logger?: CreateAppOptions['logger'];
  defaultMetrics?: boolean;
  aws?: AwsOverrides;
}

/** The ecr-api HTTP API. Never listens and never reads the environment. */
export async function buildApp(opts: BuildAppOptions): Promise<App> {
  const { config } = opts;
  const version = opts.version ?? { version: '0.0.0', githash: 'unknown', buildstamp: 'unknown' };
  const app = await createApp({
    logger: opts.logger ?? false,
    bodyLimit: 64 * 1024,
    metricsPath: `${BASE_PATH}/metrics`,
    docsPath: `${BASE_PATH}/docs`,
    defaultMetrics: opts.defaultMetrics,
    openapi: {
      title: 'ecr-api',
      version: version.version,
      description: `Amazon ECR repositories of the organisation "${config.org}", in any AWS account the service may assume its role in.`,
      securitySchemes: {
        xAuthToken: { type: 'apiKey', in: 'header', name: 'X-Auth-Token', description: 'a bcrypt hash of the shared key' },
      },
    },
    classifyError: classifyAwsError,
    ...(config.tls ? { tls: config.tls } : {}),
  });
  deadlinePerRequest(app, config.aws.deadlineMs);

  const metrics = createAwsMetrics(app.metrics);
  const endpoint = opts.aws?.endpoint ?? config.aws.endpoint;
  const clients = new AwsClientFactory({
    region: config.aws.region,
    ...(endpoint ? { endpoint } : {}),
    ...(config.aws.credentials ? { baseCredentials: config.aws.credentials } : {}),
    ...(opts.aws?.requestHandler ? { httpHandler: opts.aws.requestHandler } : {}),
    ...(opts.aws?.maxAttempts ? { maxAttempts: opts.aws.maxAttempts } : {}),
    deadlineMs: config.aws.deadlineMs,
    metrics,
  });
  const sessions = new AccountSessions({
    clients,
    role: config.aws.role,
    org: config.org,
    ...(config.aws.externalId ? { externalId: config.aws.externalId } : {}),
    region: config.aws.region,
    durationSeconds: config.aws.sessionDurationSeconds,
    deadlineMs: config.aws.deadlineMs,
    ...(opts.aws?.refreshMarginMs !== undefined ? { refreshMarginMs: opts.aws.refreshMarginMs } : {}),
    ...(opts.aws?.now ? { now: opts.aws.now } : {}),
    metrics,
    log: app.log,
  });
  const store = new RepositoryStore(sessions, config.org, config.aws.listStrategy);
  app.addHook('onClose', (_app, done) => {
    clients.destroy();
    done();
  });

  await app.register(healthRoutes, { version });
  // Everything but ping, version, metrics and the docs needs a valid X-Auth-Token.
  const verifier = new XAuthTokenVerifier(config.token);
  app.addHook('onClose', () => verifier.close());
  authMetrics(app.metrics, verifier);
  await app.register(repositoryRoutes, { store, authorize: verifier.hook() });
  return app;
}
