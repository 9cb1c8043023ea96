import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { RequestLatency } from './request-latency.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry;
  }
}

/** An app's own Prometheus registry, and the request latency it records. */
export interface HttpMetrics {
  registry: Registry;
  /** Records one finished request, Fastify's (access-log.ts) or a direct route's (direct-routes.ts). */
  record(method: string, route: string, status: number, seconds: number): void;
  /** Counts one connection destroyed because its client stopped reading (node-server.ts). */
  sendStalled(): void;
  /** Counts one request answered 503 because its body found no room in time (body-budget.ts). */
  bodyRefused(): void;
  /** Counts one request ended because its body arrived too slowly while others waited for room (body-budget.ts). */
  bodyTooSlow(): void;
  /** Counts one new connection that found the server past its connection limit (node-server.ts). */
  connectionLimitReached(): void;
  /** Counts one connection closed to hold the connection cap (node-server.ts). */
  connectionDropped(): void;
  /** Exports the connection limit in force, which `read` returns when Prometheus scrapes. */
  connectionLimit(read: () => number): void;
}

/**
 * Request latency by method, route pattern (not URL: bounded cardinality; `unmatched` for
 * requests that match no route) and status; its _count is the request count. The connections
 * destroyed for a send stall, the requests refused for body memory or ended for a body that arrived
 * too slowly while others waited, the connections past the limit and those dropped at the cap (no
 * log line for each: a client could flood the log). With `defaultMetrics`, also the process
 * metrics (memory, event loop, GC).
 */
export function httpMetrics(opts: { defaultMetrics?: boolean } = {}): HttpMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const latency = new RequestLatency(registry);
  /** Counts an event (a counter's `inc`), for the events below that are counted and not logged. */
  const counting = (name: string, help: string) => {
    const counter = new Counter({ name, help, registers: [registry] });
    return () => counter.inc();
  };
  return {
    registry,
    sendStalled: counting(
      'http_connections_send_stalled_total',
      'Connections destroyed because the client accepted no byte of a pending response for the send-stall limit',
    ),
    bodyRefused: counting(
      'http_request_bodies_refused_total',
      'Requests answered 503 because their body found no room in the memory set aside for request bodies in time',
    ),
    bodyTooSlow: counting(
      'http_request_bodies_too_slow_total',
      'Requests ended because their body arrived slower than the minimum rate while other bodies waited for room',
    ),
    connectionLimitReached: counting(
      'http_connection_limit_reached_total',
      'New connections that found the server past its connection limit, each closing the idle connections',
    ),
    connectionDropped: counting(
      'http_connections_dropped_total',
      'Connections closed to hold the cap of open connections (1.5 times the connection limit): the new one, or the oldest without a request in flight of the client address holding the most',
    ),
    connectionLimit: (read) =>
      addGauge(
        registry,
        'http_connection_limit',
        'Open connections past which a new one closes the idle ones; 1.5 times as many are closed at once',
        read,
      ),
    record: (method, route, status, seconds) => latency.observe(method, route, status, seconds),
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
