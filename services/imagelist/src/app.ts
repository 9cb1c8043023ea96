import { bearerAuth, type TokenStore } from '@platform/auth';
import { createApp, type App, type CreateAppOptions } from '@platform/http-common';
import type { Sql } from 'postgres';
import { healthRoutes } from './routes/health.js';
import { imageRoutes } from './routes/images.js';
import { classifyDatabaseError } from './store/errors.js';
import { ImageStore } from './store/images.js';

export interface BuildAppOptions {
  sql: Sql;
  /** Bearer tokens for PUT and DELETE; without it writes are open, as in the original. */
  tokens?: TokenStore;
  logger?: CreateAppOptions['logger'];
  tls?: CreateAppOptions['tls'];
  bodyLimit?: number;
  defaultMetrics?: boolean;
  version?: string;
}

/** The imagelist HTTP API over a migrated database. Never listens and never reads the environment. */
export async function buildApp(opts: BuildAppOptions): Promise<App> {
  const app = await createApp({
    logger: opts.logger,
    tls: opts.tls,
    bodyLimit: opts.bodyLimit ?? 64 * 1024,
    metricsPath: '/metrics',
    defaultMetrics: opts.defaultMetrics,
    openapi: {
      title: 'imagelist',
      version: opts.version ?? '0.0.0',
      description: 'Allowlist of container images: CI writes images, Kubernetes asks whether one may run.',
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    },
    classifyError: classifyDatabaseError,
  });
  const store = new ImageStore(opts.sql);
  const authorize = opts.tokens ? bearerAuth(opts.tokens, 'imagelist') : undefined;
  await app.register(imageRoutes, { store, ...(authorize ? { authorize } : {}) });
  await app.register(healthRoutes, { store });
  return app;
}
