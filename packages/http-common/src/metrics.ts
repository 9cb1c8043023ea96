import type { FastifyInstance, onResponseHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { LatencyHistogram, type RecordLatency } from './latency-histogram.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry;
    /** Records requests that matched no route: for the not-found handler's scope. */
    unmatchedLatencyHook: onResponseHookHandler;
  }
}

export interface MetricsOptions {
  /** Where Prometheus scrapes, e.g. `/metrics`. */
  path: string;
  /** Collect process metrics (off in tests that build many apps). */
  defaultMetrics?: boolean;
}

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * Prometheus metrics on a registry of the app's own: request latency by method, route pattern
 * (not URL: bounded cardinality) and status; its _count is the request count.
 */
export const metricsPlugin = fp<MetricsOptions>(async (app: FastifyInstance, opts) => {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const latency = new LatencyHistogram('http_request_duration_seconds', 'HTTP request latency by route', BUCKETS, registry);
  app.decorate('metrics', registry);
  app.decorate('unmatchedLatencyHook', latencyHook(latency.recorder('unmatched')));

  // Each route records through its own hook, made once here: nothing to look up per request.
  const recorders = new Map<string, RecordLatency>();
  app.addHook('onRoute', (route) => {
    let record = recorders.get(route.url);
    if (record === undefined) recorders.set(route.url, (record = latency.recorder(route.url)));
    route.onResponse = [...(route.onResponse === undefined ? [] : [route.onResponse].flat()), latencyHook(record)];
  });

  app.get(opts.path, { schema: { hide: true } }, async (_request, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
});

function latencyHook(record: RecordLatency): onResponseHookHandler {
  return (request, reply, done) => {
    record(request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  };
}

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
