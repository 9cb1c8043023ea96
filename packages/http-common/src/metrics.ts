import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry;
  }
}

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** An app's own Prometheus registry, and the request latency it records. */
export interface HttpMetrics {
  registry: Registry;
  /** Records one finished request (access-log.ts calls it for every response). */
  observe(request: FastifyRequest, reply: FastifyReply): void;
  /** Counts one connection destroyed because its client stopped reading (node-server.ts). */
  sendStalled(): void;
}

/**
 * Request latency by method, route pattern (not URL: bounded cardinality; `unmatched` for
 * requests that match no route) and status; its _count is the request count. The connections
 * destroyed for a send stall (no per-connection log line: a client could flood the log). With
 * `defaultMetrics`, also the process metrics (memory, event loop, GC).
 */
export function httpMetrics(opts: { defaultMetrics?: boolean } = {}): HttpMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const latency = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: BUCKETS,
    registers: [registry],
  });
  const sendStalled = new Counter({
    name: 'http_connections_send_stalled_total',
    help: 'Connections destroyed because the client accepted no byte of a pending response for the send-stall limit',
    registers: [registry],
  });
  return {
    registry,
    sendStalled: () => sendStalled.inc(),
    observe(request, reply) {
      const route = request.routeOptions.url ?? 'unmatched';
      latency.observe({ method: request.method, route, status_code: reply.statusCode }, reply.elapsedTime / 1000);
    },
  };
}

/** Serves the registry where Prometheus scrapes (e.g. `/metrics`) and decorates the app with it. */
export const metricsRoute = fp<{ path: string; metrics: HttpMetrics }>(async (app: FastifyInstance, { path, metrics }) => {
  const { registry } = metrics;
  app.decorate('metrics', registry);
  app.get(path, { schema: { hide: true } }, async (_request, reply) => {
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
