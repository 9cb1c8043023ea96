import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry;
  }
}

export interface MetricsOptions {
  /** Where Prometheus scrapes, e.g. `/metrics`. */
  path: string;
  /** Collect process metrics (off in tests that build many apps). */
  defaultMetrics?: boolean;
}

/** Prometheus metrics on a registry of the app's own: request counts and latency by route. */
export const metricsPlugin = fp<MetricsOptions>(async (app: FastifyInstance, opts) => {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const labelNames = ['method', 'route', 'status_code'] as const;
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  app.decorate('metrics', registry);

  // The labelled series of each method, route pattern (not URL: bounded cardinality) and status,
  // looked up once instead of hashing a label object on every response.
  const series = new Map<string, Histogram.Internal<(typeof labelNames)[number]>>();
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const key = `${request.method} ${reply.statusCode} ${route}`;
    let observe = series.get(key);
    if (observe === undefined) {
      observe = duration.labels({ method: request.method, route, status_code: String(reply.statusCode) });
      series.set(key, observe);
    }
    // the histogram's _count is the request count: no separate counter on the hot path
    observe.observe(reply.elapsedTime / 1000);
    done();
  });

  app.get(opts.path, { schema: { hide: true } }, async (_request, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
});

/** A gauge whose value is read when Prometheus scrapes, e.g. the size of a cache. */
export function addGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}
