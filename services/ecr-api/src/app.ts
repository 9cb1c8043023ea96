import { XAuthTokenVerifier } from '@platform/auth';
import { createApp, readBodiesAsJson, type App, type CreateAppOptions } from '@platform/http-common';
import type { Config } from './config.js';
import { AwsClientFactory, type AttemptTimeouts, type HttpHandler } from './aws/clients.js';
import { AccountSessions, partitionOf } from './aws/credentials.js';
import { classifyAwsError } from './aws/errors.js';
import { createAwsMetrics } from './aws/metrics.js';
import { ImageStore } from './aws/images.js';
import { Ownership } from './aws/ownership.js';
import { CREATE_CLOCK_SLACK_MS } from './aws/create-window.js';
import { RepositoryStore } from './aws/repositories.js';
import { deadlinePerRequest } from './aws/request-deadlines.js';
import { ScanStore } from './aws/scans.js';
import { RepositoryUsers } from './aws/users.js';
import { authMetrics } from './auth-metrics.js';
import { corsRoutes } from './routes/cors.js';
import { healthRoutes } from './routes/health.js';
import { imageRoutes } from './routes/images.js';
import { repositoryRoutes } from './routes/repositories.js';
import { scanRoutes } from './routes/scans.js';
import { userRoutes } from './routes/users.js';
import type { Version } from './schemas/version.js';

const BASE_PATH = '/v1/ecr';
const PUBLIC_PATHS = new Set(['ping', 'version', 'metrics', 'docs'].map((p) => `${BASE_PATH}/${p}`));

/** The paths served without a token: ping, version, metrics and the docs (with their assets). */
function isPublicPath(url: string): boolean {
  const path = url.split('?')[0]!;
  return PUBLIC_PATHS.has(path) || path.startsWith(`${BASE_PATH}/docs/`);
}

/** What tests (and only tests) change about how the service reaches AWS. */
export interface AwsOverrides {
  /** Endpoint of every AWS call, e.g. moto; wins over config.aws.endpoint. */
  endpoint?: string;
  /** Replaces the HTTP layer of every SDK client: canned AWS answers for paths moto cannot emulate. */
  requestHandler?: HttpHandler;
  /** SDK attempts per call (default 3). */
  maxAttempts?: number;
  /** Connect and answer timeouts of one attempt (default 3 s and 10 s). */
  attemptTimeouts?: Partial<AttemptTimeouts>;
  /** The credential cache's clock. */
  now?: () => number;
  /** Refresh assumed credentials this long before they expire (default 5 minutes). */
  refreshMarginMs?: number;
  /**
   * How long after its creation a repository without a pull policy, or a user in no group, counts
   * as still being created (default: the AWS deadline + CREATE_CLOCK_SLACK_MS): a retried create
   * completes it only then.
   */
  creatingMs?: number;
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
    tls: config.tls,
  });
  // Bodies as the original read them: JSON whatever the Content-Type, or none.
  readBodiesAsJson(app);
  deadlinePerRequest(app, config.aws.deadlineMs);

  const metrics = createAwsMetrics(app.metrics);
  const endpoint = opts.aws?.endpoint ?? config.aws.endpoint;
  const clients = new AwsClientFactory({
    region: config.aws.region,
    endpoint,
    baseCredentials: config.aws.credentials,
    httpHandler: opts.aws?.requestHandler,
    maxAttempts: opts.aws?.maxAttempts,
    attemptTimeouts: opts.aws?.attemptTimeouts,
    deadlineMs: config.aws.deadlineMs,
    metrics,
  });
  const sessions = new AccountSessions({
    clients,
    role: config.aws.role,
    org: config.org,
    externalId: config.aws.externalId,
    region: config.aws.region,
    durationSeconds: config.aws.sessionDurationSeconds,
    deadlineMs: config.aws.deadlineMs,
    refreshMarginMs: opts.aws?.refreshMarginMs,
    now: opts.aws?.now,
    metrics,
    log: app.log,
  });
  const ownership = new Ownership(config.org);
  const creatingMs = opts.aws?.creatingMs ?? config.aws.deadlineMs + CREATE_CLOCK_SLACK_MS;
  const users = new RepositoryUsers(sessions, ownership, partitionOf(config.aws.region), creatingMs);
  const store = new RepositoryStore(sessions, config.org, config.aws.listStrategy, users, creatingMs);
  const images = new ImageStore(sessions, ownership);
  const scans = new ScanStore(sessions, store);
  app.addHook('onClose', (_app, done) => {
    clients.destroy();
    done();
  });

  await app.register(healthRoutes, { version });
  await app.register(corsRoutes);
  // Everything but ping, version, metrics, the docs and CORS preflights needs a valid X-Auth-Token.
  const verifier = new XAuthTokenVerifier(config.token);
  app.addHook('onClose', () => verifier.close());
  authMetrics(app.metrics, verifier);
  const authorize = verifier.hook();
  // As the original, whose token check ran before its router: a request that matches no route
  // (404, or 405 for a path that has other methods) needs the token too, so that a caller without
  // it learns nothing of what exists. The public paths' other methods do not, as there.
  app.addHook('onRequest', async (request) => {
    if (request.is404 && !isPublicPath(request.url)) await authorize(request);
  });
  await app.register(repositoryRoutes, { store, authorize });
  await app.register(imageRoutes, { images, authorize });
  await app.register(userRoutes, { users, authorize });
  await app.register(scanRoutes, { scans, authorize });
  return app;
}
