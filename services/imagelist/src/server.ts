#!/usr/bin/env node
// First, so that it applies before anything else is loaded.
import './no-pretenuring.js';
import { TokenStore } from '@platform/auth';
import { ConfigError, createLogger, listenWithGrace, loadConfig, parseListen, runMain, type Logger } from '@platform/http-common';
import { accessSync, constants, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildApp } from './app.js';
import { ConfigSchema, databaseUrl } from './config.js';
import { databaseTarget, type DatabaseTarget } from './store/database-tls.js';
import { connect, startEmbedded, type EmbeddedDatabase } from './store/database.js';
import { lockDataDir, type DataDirLock } from './store/data-dir-lock.js';
import { isDatabaseUnavailable, isLostDatabaseConnection } from './store/errors.js';
import { ImageSql } from './store/image-sql.js';
import { indexMemoryBudget, LiveIndex } from './store/live-index.js';
import { memoryLimit } from './memory-limit.js';
import { limitConnectionsToMemory } from './connection-room.js';
import { migrate, MigrationWatch } from './store/migrate.js';

const SUMMARY = 'imagelist: an allowlist of container images in PostgreSQL, with a REST API.';
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

/**
 * Replicas may start before the database does: retry while it is unreachable, up to a minute.
 * Migrations get a connection of their own, whose limit on waiting for an answer follows the
 * migration (MigrationWatch, migrate.ts): 15 s, but minutes while a migration's statements run. A
 * connection that goes silent past it (its host vanished) fails ETIMEDOUT, and the migration is
 * retried as against an unreachable database.
 *
 * Each attempt connects anew: postgres.js (3.4) does not recover a connection that failed in a
 * transaction, and the retry's transaction on it was never answered.
 */
async function migrateWhenReachable(target: DatabaseTarget, connectTimeout: number, where: string, log: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const watch = new MigrationWatch();
    const sql = connect({ ...target, max: 1, connectTimeout, unansweredMs: () => watch.silenceMs });
    try {
      const { applied, unknown } = await migrate(sql, undefined, watch);
      await sql.end({ timeout: 5 });
      log.info({ applied }, applied.length ? 'migrations applied' : 'database schema up to date');
      if (unknown.length) {
        log.warn(
          { unknown },
          `the database has migrations this version does not know: ${unknown.join(', ')}; a newer imagelist migrated it`,
        );
      }
      return;
    } catch (err) {
      await sql.end({ timeout: 0 });
      const refused = certificateRefused(err);
      if (refused) throw new ConfigError(`database ${where}: ${refused}`);
      if (!isDatabaseUnavailable(err)) throw err;
      if (attempt >= 12) throw new Error(`database ${where} unreachable after ${attempt} attempts`, { cause: err });
      log.warn({ attempt, code: (err as { code?: string }).code }, 'database unreachable; retrying');
      await sleep(Math.min(1000 * attempt, 5000));
    }
  }
}

/** Node's codes for a server certificate that TLS verification refused. */
const CERTIFICATE_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** What is wrong with the database's certificate, said for an operator, or undefined. */
function certificateRefused(err: unknown): string | undefined {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || !CERTIFICATE_CODES.has(code)) return undefined;
  const check =
    code === 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? 'the host in the URL must be one the certificate names (or use sslmode=verify-ca)'
      : "the certificate must come from a CA in sslrootcert (--db-sslrootcert), or Node's built-in CAs without it";
  return `its TLS certificate was refused (${code}: ${String(message)}); ${check}`;
}

/**
 * The embedded database, for local use when no database is configured. Where it cannot keep its
 * files (a read-only image, whose Deployment lost its DATABASE_URL), the start fails naming both.
 */
async function startEmbeddedIn(dataDir: string): Promise<EmbeddedDatabase> {
  let lock: DataDirLock | undefined;
  let files = dataDir;
  if (!dataDir.startsWith('memory://')) {
    try {
      mkdirSync(dataDir, { recursive: true });
      // PGlite cannot start from a data directory that is itself a symlink (it reads no file there).
      files = realpathSync(dataDir);
      // One that exists but cannot be written (a read-only mount, another user's) failed later
      // inside PGlite, as `{"name":"ErrnoError","errno":69}`.
      accessSync(dataDir, constants.W_OK);
      lock = await lockDataDir(dataDir);
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(
        `no database: DATABASE_URL (or --db-host) is not set, and the embedded database cannot keep its files in ${dataDir} (${(err as NodeJS.ErrnoException).code}); set DATABASE_URL, or --data-dir / IMAGELIST_DATA_DIR to a writable directory or memory://`,
      );
    }
  }
  const embedded = await startEmbedded(files);
  return {
    url: embedded.url,
    async stop() {
      await embedded.stop();
      await lock?.release();
    },
  };
}

runMain(async () => {
  const warnings: string[] = [];
  const config = loadConfig(ConfigSchema, {
    name: 'imagelist',
    summary: SUMMARY,
    version,
    envPrefix: 'IMAGELIST_',
    warn: (w) => warnings.push(w),
  });
  if (Boolean(config.certfile) !== Boolean(config.keyfile)) throw new ConfigError('--certfile and --keyfile must be given together');
  const where = parseListen(config.listen);
  // Its CA file read once, now: one that cannot be read stops the start (exit 2).
  const configured = databaseUrl(config);
  let target = configured === undefined ? undefined : databaseTarget(configured);
  const log = createLogger(config.debug ? 'debug' : config.logLevel);
  for (const warning of warnings) log.warn(warning);

  // Before the database: a tokens file that cannot be read stops the start before it migrates anything.
  const tokens = config.tokensFile ? await new TokenStore(config.tokensFile, log).start() : undefined;
  if (!tokens) log.warn('no --tokens-file: PUT and DELETE are open to anyone who can reach the service');

  let embedded: EmbeddedDatabase | undefined;
  if (!target) {
    embedded = await startEmbeddedIn(config.dataDir);
    target = { url: embedded.url };
    log.warn({ dataDir: config.dataDir }, 'no DATABASE_URL: using the embedded PGlite database (one connection; for local use)');
  }
  await migrateWhenReachable(target, config.dbTimeout, embedded ? 'embedded' : new URL(target.url).host, log);
  const sql = connect({ ...target, max: embedded ? 1 : config.dbPoolSize, connectTimeout: config.dbTimeout });
  const dbDeadlineMs = config.dbTimeout * 1000;

  const memory = memoryLimit(config.memoryLimit);
  // The embedded database serves one connection, so there is no second one to LISTEN on.
  const live = embedded
    ? undefined
    : new LiveIndex(new ImageSql(sql, dbDeadlineMs), target, {
        outageGraceMs: config.outageGrace * 1000,
        maxImages: config.indexMaxImages,
        maxMemory: indexMemoryBudget(memory),
        feed: { connectTimeoutS: config.dbTimeout },
        log,
      }).start();

  const admission = {
    exemptNamespaces: config.admissionExemptNamespaces
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean),
    audit: config.admissionAudit,
  };
  log.info(
    { admission: { mode: admission.audit ? 'audit' : 'enforce', exemptNamespaces: admission.exemptNamespaces } },
    'admission policy',
  );
  const app = await buildApp({
    sql,
    live,
    dbDeadlineMs,
    tokens,
    logger: log,
    bodyLimit: config.bodyLimit,
    version,
    admission,
    ...(config.certfile && config.keyfile ? { tls: { certfile: config.certfile, keyfile: config.keyfile } } : {}),
  });
  limitConnectionsToMemory(app, memory, () => live?.indexBytes ?? 0);
  app.addHook('onClose', async () => {
    await tokens?.close();
    await live?.close();
    // By now every request's database deadline (--db-timeout) has passed: a statement still
    // running was answered 503 already. 3 s, not more: a hung database must not use up the grace.
    await sql.end({ timeout: 3 });
    await embedded?.stop();
  });
  await listenWithGrace(app, where, { survivable: isLostDatabaseConnection });
});
