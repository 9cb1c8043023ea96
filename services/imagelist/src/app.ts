import { bearerAuth, type TokenStore } from '@platform/auth';
import { addGauge, createApp, type App, type CreateAppOptions } from '@platform/http-common';
import type { Sql } from 'postgres';
import { AdmissionPolicy, type PolicyOptions } from './admission/policy.js';
import { admissionRoutes } from './routes/admission.js';
import { healthRoutes } from './routes/health.js';
import { imageRoutes } from './routes/images.js';
import { DatabaseAllowlist, IndexedAllowlist } from './store/allowlist.js';
import { classifyDatabaseError } from './store/errors.js';
import { ImageSql } from './store/image-sql.js';
import { ImageStore } from './store/images.js';
import type { LiveIndex } from './store/live-index.js';
import { LookupProbe } from './store/lookup-probe.js';

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
  live?: LiveIndex;
  /** How long a request waits for the database before it is answered 503 (default 2 s). */
  dbDeadlineMs?: number;
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
  const dbDeadlineMs = opts.dbDeadlineMs ?? 2000;
  const { live } = opts;
  const images = new ImageSql(opts.sql, dbDeadlineMs, live?.clock);
  const store = new ImageStore(images, live);
  if (live) {
    addGauge(app.metrics, 'imagelist_index_images', 'Images in the in-memory index', () => live.index.size);
    addGauge(app.metrics, 'imagelist_index_fresh', '1 while the index is listening and current (answers come from memory), else 0', () =>
      live.fresh ? 1 : 0,
    );
    addGauge(
      app.metrics,
      'imagelist_index_over_limit',
      '1 while the allowlist is larger than --index-max-images or than the memory the index may take, so this replica keeps no index and answers from the database',
      () => (live.overLimit ? 1 : 0),
    );
    addGauge(
      app.metrics,
      'imagelist_index_memory_bytes',
      "The in-memory index's estimated size (names, columns and tags)",
      () => live.indexBytes,
    );
    addGauge(app.metrics, 'imagelist_database_up', '1 while the database is reachable, else 0', () => (live.databaseReachable ? 1 : 0));
    addGauge(
      app.metrics,
      'imagelist_index_serving_stale',
      '1 while answers come from the last exact in-memory state because the database is unreachable',
      () => (live.servingStale ? 1 : 0),
    );
    addGauge(
      app.metrics,
      'imagelist_index_state_age_seconds',
      'Seconds since the in-memory state was last known to be exact (+Inf before the first load)',
      () => (live.exactAsOf === 0 ? Infinity : Math.max(0, Date.now() - live.exactAsOf) / 1000),
    );
  }
  const authorize = opts.tokens ? bearerAuth(app, opts.tokens, 'imagelist') : undefined;
  await app.register(imageRoutes, { store, authorize });
  await app.register(healthRoutes, { store, live, lookup: new LookupProbe(images, dbDeadlineMs) });
  const fromDatabase = new DatabaseAllowlist(images);
  const allowlist = live ? new IndexedAllowlist(live, fromDatabase) : fromDatabase;
  const policy = new AdmissionPolicy(allowlist, opts.admission);
  await app.register(admissionRoutes, { policy });
  return app;
}
