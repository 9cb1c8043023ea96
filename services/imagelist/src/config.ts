import Type, { type Static } from 'typebox';

/** Flags and environment variables of `imagelist`; names follow the original where it had one. */
export const ConfigSchema = Type.Object({
  listen: Type.String({ default: ':8000', env: 'IMAGELIST_LISTEN', description: 'Address to listen on, [host]:port' }),
  tokensFile: Type.Optional(
    Type.String({
      minLength: 1,
      env: 'IMAGELIST_TOKENS_FILE',
      emptyEnvRefused: true,
      description: 'YAML file of bearer tokens for PUT and DELETE, reloaded when it changes; unset: writes need no token',
    }),
  ),
  databaseUrl: Type.Optional(
    Type.String({
      pattern: '^postgres(ql)?://',
      env: 'DATABASE_URL',
      emptyEnvRefused: true,
      secret: true,
      description: 'PostgreSQL URL; unset (and no --db-host): an embedded PGlite database',
    }),
  ),
  dbHost: Type.Optional(
    Type.String({
      minLength: 1,
      env: 'IMAGELIST_DB_HOST',
      emptyEnvRefused: true,
      description: 'PostgreSQL host (instead of --database-url)',
    }),
  ),
  dbPort: Type.Integer({ minimum: 1, maximum: 65535, default: 5432, env: 'IMAGELIST_DB_PORT', description: 'PostgreSQL port' }),
  dbName: Type.String({ default: 'imagelist', env: 'IMAGELIST_DB_NAME', description: 'PostgreSQL database' }),
  dbUser: Type.String({ default: 'postgres', env: 'IMAGELIST_DB_USER', description: 'PostgreSQL user' }),
  dbPassword: Type.Optional(Type.String({ env: 'IMAGELIST_DB_PASSWORD', secret: true, description: 'PostgreSQL password' })),
  dbSslmode: Type.Union([Type.Literal('disable'), Type.Literal('require'), Type.Literal('verify-ca'), Type.Literal('verify-full')], {
    default: 'disable',
    env: 'IMAGELIST_DB_SSLMODE',
    description:
      'disable, require (encrypted, unverified), verify-ca (the certificate chains to --db-sslrootcert, any host name) or verify-full (and names the host)',
  }),
  dbSslrootcert: Type.Optional(
    Type.String({
      minLength: 1,
      env: 'IMAGELIST_DB_SSLROOTCERT',
      description:
        'PEM file of the CA certificates the database\'s certificate must chain to, read at start ("system": Node\'s built-in list); makes require check the CA too, as libpq does',
    }),
  ),
  dbPoolSize: Type.Integer({
    minimum: 1,
    maximum: 100,
    default: 10,
    env: 'IMAGELIST_DB_POOL_SIZE',
    description: 'Connections in the pool',
  }),
  dbTimeout: Type.Number({
    minimum: 0.1,
    maximum: 60,
    default: 2,
    env: 'IMAGELIST_DB_TIMEOUT',
    description:
      'Seconds to wait for the database (connecting, or answering one request) before answering 503; below the webhook timeout (5 s) so the API server gets an answer',
  }),
  outageGrace: Type.Number({
    minimum: 0,
    maximum: 86_400,
    default: 300,
    env: 'IMAGELIST_OUTAGE_GRACE',
    description:
      'Seconds that admission and reads answer from the last exact in-memory allowlist while the database is unreachable, then fail closed; 0: fail closed at once. The default equals the default of the ImagePolicyWebhook allow cache (allowTTL, 5 min)',
  }),
  indexMaxImages: Type.Integer({
    minimum: 0,
    default: 1_500_000,
    env: 'IMAGELIST_INDEX_MAX_IMAGES',
    description:
      'Most images held in memory (about 150 bytes each: 1,000,000 peak at ~220 MB RSS as deployed); a larger allowlist is answered from the database',
  }),
  memoryLimit: Type.Optional(
    Type.Integer({
      minimum: 64,
      env: 'IMAGELIST_MEMORY_LIMIT',
      description:
        "MiB this process may use, of which its index and its open connections take shares; unset: the container's memory limit, else the machine's memory",
    }),
  ),
  dataDir: Type.String({
    default: '.data/imagelist',
    env: 'IMAGELIST_DATA_DIR',
    description: 'Where the embedded database keeps its files ("memory://" for none)',
  }),
  certfile: Type.Optional(
    Type.String({
      minLength: 1,
      env: 'IMAGELIST_CERTFILE',
      emptyEnvRefused: true,
      description: 'TLS certificate (PEM); with --keyfile serves HTTPS, reloaded on change',
    }),
  ),
  keyfile: Type.Optional(
    Type.String({ minLength: 1, env: 'IMAGELIST_KEYFILE', emptyEnvRefused: true, description: 'TLS private key (PEM)' }),
  ),
  logLevel: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace'].map((l) => Type.Literal(l)),
    { default: 'info', env: 'IMAGELIST_LOG_LEVEL', description: 'fatal, error, warn, info, debug or trace' },
  ),
  debug: Type.Boolean({ default: false, env: 'IMAGELIST_DEBUG', description: 'Same as --log-level debug' }),
  admissionExemptNamespaces: Type.String({
    default: '',
    env: 'IMAGELIST_ADMISSION_EXEMPT_NAMESPACES',
    description: 'Comma-separated namespaces whose workloads are admitted unchecked',
  }),
  admissionAudit: Type.Boolean({
    default: false,
    env: 'IMAGELIST_ADMISSION_AUDIT',
    description: 'Admit every image, but warn about those not on the allowlist',
  }),
  bodyLimit: Type.Integer({
    minimum: 1024,
    default: 64 * 1024,
    env: 'IMAGELIST_BODY_LIMIT',
    description: 'Largest PUT /images body in bytes (admission reviews may be up to 8 MiB)',
  }),
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
  // with sslmode=disable too: databaseTarget refuses the contradiction rather than drop the CA
  if (config.dbSslrootcert) url.searchParams.set('sslrootcert', config.dbSslrootcert);
  return url.toString();
}
