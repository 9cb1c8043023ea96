import { bearerAuth, type TokenStore } from '@platform/auth';
import { addGauge, createApp, type App, type CreateAppOptions } from '@platform/http-common';
import type { Sql } from 'postgres';
import { AdmissionPolicy, type PolicyOptions } from './admission/policy.js';
import { admissionRoutes } from './routes/admission.js';
import { healthRoutes } from './routes/health.js';
import { imageRoutes } from './routes/images.js';
import { DatabaseAllowlist } from './store/allowlist.js';
import { classifyDatabaseError } from './store/errors.js';
import { IndexedAllowlist, type ImageIndex } from './store/image-index.js';
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
  /** The in-memory allowlist; without it every read goes to the database. */
  index?: ImageIndex;
  /** Namespace exemptions and audit mode of the admission endpoints. */
  admission?: PolicyOptions;
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
  const store = new ImageStore(opts.sql, opts.index);
  const { index } = opts;
  if (index) {
    addGauge(app.metrics, 'imagelist_index_images', 'Images in the in-memory index', () => index.size);
    addGauge(app.metrics, 'imagelist_index_fresh', '1 while the index is listening and current, else 0 (reads go to the database)', () => (index.fresh ? 1 : 0));
  }
  const authorize = opts.tokens ? bearerAuth(opts.tokens, 'imagelist') : undefined;
  await app.register(imageRoutes, { store, ...(authorize ? { authorize } : {}) });
  await app.register(healthRoutes, { store });
  const fromDatabase = new DatabaseAllowlist(opts.sql);
  const allowlist = opts.index ? new IndexedAllowlist(opts.index, fromDatabase) : fromDatabase;
  const policy = new AdmissionPolicy(allowlist, opts.admission);
  await app.register(admissionRoutes, { policy });
  return app;
}
