import { ConfigError, loadConfig, parseListen, type ConfigMeta, type TlsFiles } from '@platform/http-common';
import { readFileSync } from 'node:fs';
import Type, { type Static, type TSchemaOptions } from 'typebox';
import Value from 'typebox/value';
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';

/**
 * The --help / env metadata of a setting, given as schema options: spreading a TypeBox schema into
 * a new object drops its hidden kind, and Value.Convert then no longer turns "900" into 900.
 */
const meta = (m: ConfigMeta) => ({ ...m });

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];
const LIST_STRATEGIES = ['tagging', 'describe'] as const;
export type ListStrategy = (typeof LIST_STRATEGIES)[number];

/**
 * The rule of each setting that the flags and the JSON config share, whichever gives it: each
 * value is checked once, by the schema of its source, and a broken one is named by `problem`.
 */
const RULES = {
  region: { pattern: '^[a-z]{2}(-[a-z]+)+-\\d+$', problem: 'region must be an AWS region name such as us-east-1' },
  role: {
    pattern: '^[\\w+=,.@/-]{1,512}$',
    problem: 'account.role must be an IAM role name (letters, digits and _+=,.@-, optionally a /path/)',
  },
  // The org names IAM's group SpinupECRAdminGroup-{org} and policy SpinupECRAdminPolicy-{org} (at
  // most 128 of [\w+=,.@-]), the path /spinup/{org}/ (a "/" would nest one org inside another) and
  // the spinup:org tag (no ","): what all of them accept.
  org: {
    pattern: '^[\\w+=.@-]{1,107}$',
    problem: 'org must be 1-107 characters of letters, digits and _+=.@- (it names IAM groups, policies and paths, and is a tag value)',
  },
  externalId: { minLength: 2, maxLength: 1224, problem: 'account.externalId must be 2-1224 characters' },
  endpoint: { pattern: '^https?://[^\\s/]+', problem: 'the AWS endpoint must be an http(s) URL' },
} as const;
const logLevelSchema = (opts: TSchemaOptions) =>
  Type.Union(
    LOG_LEVELS.map((l) => Type.Literal(l)),
    opts,
  );
const RegionSchema = Type.String(RULES.region);

/**
 * The configuration schema: flags and environment variables, each overriding the same setting of
 * the original's JSON config (file at --config / API_CONFIG_FILE, or its content in API_CONFIG).
 * Precedence: flag, then environment, then the JSON config, then the default.
 */
export const ConfigSchema = Type.Object({
  config: Type.Optional(
    Type.String({
      minLength: 1,
      ...meta({
        env: 'API_CONFIG_FILE',
        description:
          "Path of the original's JSON config (listenAddress, account{region, akid, secret, externalId, role}, token, org, logLevel)",
      }),
    }),
  ),
  apiConfig: Type.Optional(
    Type.String({
      minLength: 1,
      ...meta({
        env: 'API_CONFIG',
        secret: true,
        description:
          'The JSON config itself, or its base64 (as the original and its k8s chart), instead of a file; --config / API_CONFIG_FILE wins',
      }),
    }),
  ),
  listen: Type.Optional(
    Type.String({
      minLength: 1,
      ...meta({ env: 'ECR_API_LISTEN', description: 'Address to listen on, [host]:port (overrides listenAddress; default ":8080")' }),
    }),
  ),
  region: Type.Optional(
    Type.String({
      ...RULES.region,
      ...meta({ env: 'ECR_API_REGION', description: 'AWS region (overrides account.region; else AWS_REGION / AWS_DEFAULT_REGION)' }),
    }),
  ),
  role: Type.Optional(
    Type.String({
      ...RULES.role,
      ...meta({
        env: 'ECR_API_ROLE',
        description: 'Role name assumed in each account, arn:aws:iam::{account}:role/{role} (overrides account.role)',
      }),
    }),
  ),
  externalId: Type.Optional(
    Type.String({
      ...RULES.externalId,
      ...meta({ env: 'ECR_API_EXTERNAL_ID', secret: true, description: 'External id passed to AssumeRole (overrides account.externalId)' }),
    }),
  ),
  org: Type.Optional(
    Type.String({
      ...RULES.org,
      ...meta({
        env: 'ECR_API_ORG',
        description: 'Organisation: the spinup:org tag of every repository this service manages (overrides org)',
      }),
    }),
  ),
  token: Type.Optional(
    Type.String({
      minLength: 1,
      ...meta({
        env: 'ECR_API_TOKEN',
        secret: true,
        description: 'Shared key; clients send a bcrypt hash of it in X-Auth-Token (overrides token; prefer the env or the file)',
      }),
    }),
  ),
  awsEndpoint: Type.Optional(
    Type.String({
      ...RULES.endpoint,
      ...meta({
        env: 'AWS_ENDPOINT_URL',
        description: 'Send every AWS call (STS, ECR, tagging) to this endpoint, e.g. moto (overrides account.endpoint)',
      }),
    }),
  ),
  listStrategy: Type.Optional(
    Type.Union(
      LIST_STRATEGIES.map((s) => Type.Literal(s)),
      meta({
        env: 'ECR_API_LIST_STRATEGY',
        description:
          'How repositories are listed: "tagging" (Resource Groups Tagging API, default) or "describe" (DescribeRepositories + tags of each; for emulators such as moto)',
      }),
    ),
  ),
  awsDeadline: Type.Optional(
    Type.Number({
      minimum: 0.1,
      // The answer leaves a few ms after the deadline: 29 keeps it within 30 s of the request.
      maximum: 29,
      ...meta({
        env: 'ECR_API_AWS_DEADLINE',
        description:
          'Seconds a request may spend on AWS, every call and retry included, before it is answered 504 (default 25, at most 29)',
      }),
    }),
  ),
  certfile: Type.Optional(
    Type.String({
      minLength: 1,
      ...meta({
        env: 'ECR_API_CERTFILE',
        emptyEnvRefused: true,
        description: 'TLS certificate (PEM); with --keyfile serves HTTPS, reloaded on change',
      }),
    }),
  ),
  keyfile: Type.Optional(
    Type.String({ minLength: 1, ...meta({ env: 'ECR_API_KEYFILE', emptyEnvRefused: true, description: 'TLS private key (PEM)' }) }),
  ),
  sessionDuration: Type.Optional(
    Type.Integer({
      minimum: 900,
      maximum: 43200,
      ...meta({
        env: 'ECR_API_SESSION_DURATION',
        description: 'Lifetime in seconds of assumed-role sessions, cached per account (default 3600)',
      }),
    }),
  ),
  logLevel: Type.Optional(
    logLevelSchema(
      meta({
        env: 'ECR_API_LOG_LEVEL',
        description: 'fatal, error, warn, info, debug or trace (overrides logLevel; default info)',
      }),
    ),
  ),
});
export type ConfigFlags = Static<typeof ConfigSchema>;

/**
 * The original's JSON config. Its Go decoder matched keys case-insensitively and ignored unknown
 * ones (e.g. an old `Version` block), so keys are normalised to these names before validation.
 */
const FileConfigSchema = Type.Object({
  listenAddress: Type.Optional(Type.String()),
  account: Type.Optional(
    Type.Object({
      endpoint: Type.Optional(Type.String(RULES.endpoint)),
      region: Type.Optional(RegionSchema),
      akid: Type.Optional(Type.String()),
      secret: Type.Optional(Type.String()),
      externalId: Type.Optional(Type.String(RULES.externalId)),
      role: Type.Optional(Type.String(RULES.role)),
    }),
  ),
  token: Type.Optional(Type.String()),
  org: Type.Optional(Type.String(RULES.org)),
  // Any string, as the original read it: a level it did not know was info (fileLogLevel).
  logLevel: Type.Optional(Type.String()),
});
type FileConfig = Static<typeof FileConfigSchema>;

/** What the service runs with, resolved from flags, environment and the JSON config. */
export interface Config {
  listen: string;
  logLevel: LogLevel;
  org: string;
  /** The shared key behind X-Auth-Token. */
  token: string;
  /** Serve HTTPS from these files (reloaded when they change); absent: HTTP. */
  tls?: TlsFiles;
  aws: AwsConfig;
}

interface AwsConfig {
  region: string;
  role: string;
  externalId?: string;
  /** Static base credentials; absent: the default AWS credential chain (env, profile, IRSA, IMDS...). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  endpoint?: string;
  sessionDurationSeconds: number;
  listStrategy: ListStrategy;
  /** What a client request may spend on AWS, retries included, before it is answered 504. */
  deadlineMs: number;
}

/** 25 s: under the 30 s that clients and proxies commonly allow, with room for the answer. */
const DEFAULT_AWS_DEADLINE_S = 25;

const TOP_KEYS = ['listenAddress', 'account', 'token', 'org', 'logLevel'];
const ACCOUNT_KEYS = ['endpoint', 'region', 'akid', 'secret', 'externalId', 'role'];

/** Known keys under their canonical names; blank strings (the original's `"endpoint": ""`) are absent. */
function canonicalKeys(value: unknown, known: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return out;
  for (const [key, v] of Object.entries(value)) {
    const name = known.find((k) => k.toLowerCase() === key.toLowerCase());
    if (name && !(typeof v === 'string' && v.trim() === '')) out[name] = v;
  }
  return out;
}

/** Standard base64 (padded, as Go's StdEncoding wants it), once line breaks and spaces are removed. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * API_CONFIG as the original read it: the base64 of the JSON config when it decodes (the k8s chart
 * puts it there from a Secret; `base64` wraps lines and a Secret may end in a newline), else the
 * JSON itself. The JSON config holds `{`, which base64 never does, so neither is taken for the
 * other.
 */
function decodeApiConfig(value: string): { text: string; source: string } {
  const compact = value.replace(/\s+/g, '');
  if (compact !== '' && BASE64.test(compact))
    return { text: Buffer.from(compact, 'base64').toString('utf8'), source: 'API_CONFIG (base64)' };
  return { text: value, source: 'API_CONFIG' };
}

/**
 * Where and why `text` is not JSON. JSON.parse's own message quotes the text around the error
 * (`Unexpected token 'e', "eyJMaXN0ZW"... is not valid JSON`), and the config holds the token and
 * the AWS secret, so this names only the kind of error and its position.
 */
function jsonSyntaxError(text: string): string {
  const errors: ParseError[] = [];
  parseJsonc(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const first = errors[0];
  if (!first) return 'invalid JSON';
  const before = text.slice(0, first.offset).split('\n');
  return `${printParseErrorCode(first.error)} at line ${before.length}, column ${before.at(-1)!.length + 1}`;
}

/** Parses and validates the original's JSON config; `source` names it in errors. */
function parseFileConfig(text: string, source: string): FileConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ConfigError(`${source} is not valid JSON: ${jsonSyntaxError(text)}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${source} must be a JSON object`);
  const config = canonicalKeys(raw, TOP_KEYS);
  if (config.account !== undefined) config.account = canonicalKeys(config.account, ACCOUNT_KEYS);
  if (typeof config.logLevel === 'string') config.logLevel = config.logLevel.toLowerCase();
  if (!Value.Check(FileConfigSchema, config)) {
    // Messages name the field, never its value: the file holds secrets.
    const problems = new Set(
      Value.Errors(FileConfigSchema, config).map((e) => {
        const path = e.instancePath.split('/').filter(Boolean);
        return problemOf(FileConfigSchema, path) ?? `${path.join('.') || '(root)'}: ${e.message}`;
      }),
    );
    throw new ConfigError(`invalid ${source}:\n${[...problems].map((p) => `  ${p}`).join('\n')}`);
  }
  return config;
}

/**
 * The config's `logLevel`: the original (logrus) knew error, warn and debug and ran at info with
 * anything else (`warning`, `panic`, `verbose`, ...), so a carried-over config must not stop the
 * service; such a value is info, and `warn` names it.
 */
function fileLogLevel(value: string | undefined, warn?: (message: string) => void): LogLevel | undefined {
  if (value === undefined || (LOG_LEVELS as readonly string[]).includes(value)) return value as LogLevel | undefined;
  warn?.(
    `logLevel ${JSON.stringify(value.slice(0, 40))} in the config is not one of ${LOG_LEVELS.join(', ')}; using info, as the original did`,
  );
  return 'info';
}

/** The `problem` text of the schema at `path` inside `schema`, if it has one. */
function problemOf(schema: unknown, path: string[]): string | undefined {
  let at = schema as { properties?: Record<string, unknown>; problem?: string } | undefined;
  for (const key of path) at = at?.properties?.[key] as typeof at;
  return at?.problem;
}

const blank = (s: string | undefined) => (s === undefined || s.trim() === '' ? undefined : s);

/**
 * Resolves the configuration, or throws a ConfigError (exit code 2) that lists every missing or
 * invalid setting and where it can be given. Error messages never contain secret values.
 */
export function resolveConfig(
  flags: ConfigFlags,
  env: NodeJS.ProcessEnv,
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
  warn?: (message: string) => void,
): Config {
  let file: FileConfig = {};
  if (flags.config) {
    let text: string;
    try {
      text = readFile(flags.config);
    } catch (err) {
      throw new ConfigError(
        `cannot read config file ${flags.config} (--config / API_CONFIG_FILE): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    file = parseFileConfig(text, `config file ${flags.config}`);
  } else if (flags.apiConfig) {
    const { text, source } = decodeApiConfig(flags.apiConfig);
    file = parseFileConfig(text, source);
  }
  // Each value was checked by the schema of its source (flags and environment: ConfigSchema; the
  // JSON config: FileConfigSchema); what is left is what no single value can say.
  const account = file.account ?? {};
  const problems: string[] = [];

  const token = flags.token ?? file.token;
  if (!token) problems.push('token is required: the shared key behind X-Auth-Token ("token" in the config, or ECR_API_TOKEN)');
  const org = flags.org ?? file.org;
  if (!org)
    problems.push('org is required: the spinup:org of the repositories this service manages ("org" in the config, or --org / ECR_API_ORG)');
  const role = flags.role ?? account.role;
  if (!role)
    problems.push('role is required: the role name to assume in each account ("account.role" in the config, or --role / ECR_API_ROLE)');
  // AWS_REGION / AWS_DEFAULT_REGION belong to the SDK's conventions, not to a schema of ours.
  const envRegion = blank(env.AWS_REGION) ?? blank(env.AWS_DEFAULT_REGION);
  const region = flags.region ?? account.region ?? envRegion;
  if (!region) problems.push('region is required ("account.region" in the config, or --region / ECR_API_REGION / AWS_REGION)');
  else if (region === envRegion && !Value.Check(RegionSchema, region)) problems.push(RULES.region.problem);

  const { akid, secret } = account;
  if (Boolean(akid) !== Boolean(secret)) {
    problems.push('account.akid and account.secret must be given together (or neither, for the default AWS credential chain)');
  }
  const endpoint = flags.awsEndpoint ?? account.endpoint;

  const listen = flags.listen ?? file.listenAddress ?? ':8080';
  try {
    parseListen(listen);
  } catch (err) {
    problems.push((err as Error).message);
  }
  const logLevel = flags.logLevel ?? fileLogLevel(file.logLevel, warn) ?? 'info';

  if (Boolean(flags.certfile) !== Boolean(flags.keyfile)) problems.push('--certfile and --keyfile must be given together');

  if (problems.length) throw new ConfigError(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);

  const externalId = flags.externalId ?? account.externalId;
  return {
    listen,
    logLevel,
    org: org!,
    token: token!,
    ...(flags.certfile && flags.keyfile ? { tls: { certfile: flags.certfile, keyfile: flags.keyfile } } : {}),
    aws: {
      region: region!,
      role: role!,
      ...(externalId ? { externalId } : {}),
      ...(akid && secret ? { credentials: { accessKeyId: akid, secretAccessKey: secret } } : {}),
      ...(endpoint ? { endpoint } : {}),
      sessionDurationSeconds: flags.sessionDuration ?? 3600,
      listStrategy: flags.listStrategy ?? 'tagging',
      deadlineMs: Math.round((flags.awsDeadline ?? DEFAULT_AWS_DEADLINE_S) * 1000),
    },
  };
}

export const SUMMARY = 'ecr-api: a REST API over Amazon ECR repositories of one organisation, across AWS accounts (AssumeRole).';

/**
 * Reads flags and environment (and the JSON config they point to); throws ConfigError/HelpRequested.
 * `warn` receives a warning for each ECR_API_* variable that sets nothing (a mistyped name), and
 * for a config `logLevel` it does not know (read as info).
 */
export function readConfig(
  opts: { version?: string; argv?: string[]; env?: NodeJS.ProcessEnv; warn?: (message: string) => void } = {},
): Config {
  const env = opts.env ?? process.env;
  const flags = loadConfig(ConfigSchema, {
    name: 'ecr-api',
    summary: SUMMARY,
    version: opts.version,
    argv: opts.argv,
    env,
    envPrefix: 'ECR_API_',
    warn: opts.warn,
  });
  return resolveConfig(flags, env, undefined, opts.warn);
}

/** The configuration as it may be logged: no token, secret key or external id. */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    listen: config.listen,
    org: config.org,
    region: config.aws.region,
    role: config.aws.role,
    externalId: config.aws.externalId ? 'set' : 'unset',
    credentials: config.aws.credentials ? 'static (account.akid)' : 'default AWS credential chain',
    endpoint: config.aws.endpoint ?? 'AWS',
    listStrategy: config.aws.listStrategy,
    sessionDurationSeconds: config.aws.sessionDurationSeconds,
    awsDeadlineSeconds: config.aws.deadlineMs / 1000,
    https: config.tls ? config.tls.certfile : 'off',
  };
}
