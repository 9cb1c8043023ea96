import { CONNECTION_CAP, type App } from '@platform/http-common';

const MB = 1_000_000;

/**
 * What the connection limit leaves room for, measured with the Deployment's settings over HTTPS
 * (README, Memory): an open connection takes up to ~150 KB. A silent one takes ~30 KB (2,800 took
 * 84 MB at 1,000,000 images), but one whose TLS handshake stalls after a partial ClientHello ~60 KB
 * while open, and its slot ~150 KB for good: glibc keeps what OpenSSL freed (rounds of 3,000 such
 * connections took a replica from 159 to 474 MB, past its 384 MiB, at ~50 KB a connection; to
 * 232 MB at 150 KB). The process without its index ~130 MB
 * (117 MB with an empty allowlist, 221-227 MB at 1,000,000 images whose index estimates 96 MB); and
 * the request bodies being read and parsed at once up to ~95 MB (body-budget.ts lets 16 MiB in).
 */
const PER_CONNECTION_BYTES = 150_000;
const PROCESS_BYTES = 130 * MB;
const BODIES_BYTES = 95 * MB;
/** Of the memory limit, what all of it together may reach: the rest is the allocator's slack. */
const MEMORY_SHARE = 0.9;
/**
 * The limit, however large the index: the API servers keep a connection per review in flight, CI
 * clients and Prometheus one each. 300 connections (the cap) take up to ~45 MB.
 */
export const MIN_CONNECTIONS = 200;
/** The limit when memory is plenty (http-common's default). */
export const MAX_CONNECTIONS = 2000;

/**
 * The connection limit for a replica with `memory` bytes and an index of `indexBytes`: what is left
 * beside the process, its index and the bodies, for the cap (1.5 times the limit) of connections.
 * Each bound alone held, but a client holding connections open while sending the largest reviews
 * took a replica at 1,000,000 images from 221 to 466 MB, past the Deployment's 384 MiB: every
 * replica OOM-killed at once takes the cluster's admission with it.
 */
export function connectionLimit(memory: number, indexBytes: number): number {
  const room = memory * MEMORY_SHARE - PROCESS_BYTES - BODIES_BYTES - indexBytes;
  const limit = Math.floor(room / PER_CONNECTION_BYTES / CONNECTION_CAP);
  return Math.min(MAX_CONNECTIONS, Math.max(MIN_CONNECTIONS, limit));
}

/** How often the limit follows the index, which grows and shrinks with the allowlist. */
const FOLLOW_MS = 1000;

/**
 * Keeps the app's connection limit at connectionLimit() while the index changes, from now until
 * the app closes.
 */
export function limitConnectionsToMemory(app: App, memory: number, indexBytes: () => number): void {
  const follow = () => app.limitConnections(connectionLimit(memory, indexBytes()));
  follow();
  const timer = setInterval(follow, FOLLOW_MS).unref();
  app.addHook('onClose', async () => clearInterval(timer));
}
