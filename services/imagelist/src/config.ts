import type { ConfigMeta } from '@platform/http-common';
import Type, { type Static, type TSchema } from 'typebox';

const opt = <T extends TSchema>(schema: T, meta: ConfigMeta) => Type.Optional({ ...schema, ...meta } as T);
const field = <T extends TSchema>(schema: T, meta: ConfigMeta) => ({ ...schema, ...meta }) as T;

/** Flags and environment variables of `imagelist`; names follow the original where it had one. */
export const ConfigSchema = Type.Object({
  listen: field(Type.String({ default: ':8000' }), { env: 'IMAGELIST_LISTEN', description: 'Address to listen on, [host]:port' }),
  tokensFile: opt(Type.String({ minLength: 1 }), {
    env: 'IMAGELIST_TOKENS_FILE',
    description: 'YAML file of bearer tokens for PUT and DELETE, reloaded when it changes; unset: writes need no token',
  }),
  databaseUrl: opt(Type.String({ pattern: '^postgres(ql)?://' }), {
    env: 'DATABASE_URL',
    secret: true,
    description: 'PostgreSQL URL; unset (and no --db-host): an embedded PGlite database',
  }),
  dbHost: opt(Type.String({ minLength: 1 }), { env: 'IMAGELIST_DB_HOST', description: 'PostgreSQL host (instead of --database-url)' }),
  dbPort: field(Type.Integer({ minimum: 1, maximum: 65535, default: 5432 }), { env: 'IMAGELIST_DB_PORT', description: 'PostgreSQL port' }),
  dbName: field(Type.String({ default: 'imagelist' }), { env: 'IMAGELIST_DB_NAME', description: 'PostgreSQL database' }),
  dbUser: field(Type.String({ default: 'postgres' }), { env: 'IMAGELIST_DB_USER', description: 'PostgreSQL user' }),
  dbPassword: opt(Type.String(), { env: 'IMAGELIST_DB_PASSWORD', secret: true, description: 'PostgreSQL password' }),
  dbSslmode: field(Type.Union([Type.Literal('disable'), Type.Literal('require'), Type.Literal('verify-full')], { default: 'disable' }), {
    env: 'IMAGELIST_DB_SSLMODE',
    description: 'disable, require or verify-full',
  }),
  dbPoolSize: field(Type.Integer({ minimum: 1, maximum: 100, default: 10 }), { env: 'IMAGELIST_DB_POOL_SIZE', description: 'Connections in the pool' }),
  dataDir: field(Type.String({ default: '.data/imagelist' }), {
    env: 'IMAGELIST_DATA_DIR',
    description: 'Where the embedded database keeps its files ("memory://" for none)',
  }),
  certfile: opt(Type.String({ minLength: 1 }), { env: 'IMAGELIST_CERTFILE', description: 'TLS certificate (PEM); with --keyfile serves HTTPS, reloaded on change' }),
  keyfile: opt(Type.String({ minLength: 1 }), { env: 'IMAGELIST_KEYFILE', description: 'TLS private key (PEM)' }),
  logLevel: field(Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace'].map((l) => Type.Literal(l)), { default: 'info' }), {
    env: 'IMAGELIST_LOG_LEVEL',
    description: 'fatal, error, warn, info, debug or trace',
  }),
  debug: field(Type.Boolean({ default: false }), { env: 'IMAGELIST_DEBUG', description: 'Same as --log-level debug' }),
  bodyLimit: field(Type.Integer({ minimum: 1024, default: 64 * 1024 }), { env: 'IMAGELIST_BODY_LIMIT', description: 'Largest request body in bytes' }),
});
export type Config = Static<typeof ConfigSchema>;

/** The PostgreSQL URL the flags describe, or undefined for the embedded database. */
export function databaseUrl(config: Config): string | undefined {
  if (config.databaseUrl) return config.databaseUrl;
  if (!config.dbHost) return undefined;
  const url = new URL('postgres://');
  url.hostname = config.dbHost;
  url.port = String(config.dbPort);
  url.pathname = `/${config.dbName}`;
  url.username = config.dbUser;
  if (config.dbPassword) url.password = config.dbPassword;
  if (config.dbSslmode !== 'disable') url.searchParams.set('sslmode', config.dbSslmode);
  return url.toString();
}
