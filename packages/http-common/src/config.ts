import { parseArgs } from 'node:util';
import type { Static, TObject, TSchema } from 'typebox';
import Value from 'typebox/value';

/**
 * Configuration from one TypeBox object schema. Each property may carry, among its TypeBox options
 * (`Type.Integer({ default: 10, env: 'APP_POOL_SIZE' })`; spreading a TypeBox schema into a new
 * object loses its kind, so pass these as options):
 * - `env`: the environment variable that sets it (flags win over env, env over defaults);
 * - `flag`: the long flag name (default: the property name in kebab-case);
 * - `description`: the --help text.
 */
export interface ConfigMeta {
  env?: string;
  flag?: string;
  description?: string;
  /** Hide the value in --help and in logs. */
  secret?: boolean;
  /**
   * The environment variable set to '' is refused (exit 2), not read as unset as other variables
   * are: for a setting whose absence turns a protection off (writes open without a tokens file,
   * HTTP without a certificate, the embedded database without a URL). A manifest or template that
   * renders a missing value as '' started the service that way with only a warning.
   */
  emptyEnvRefused?: boolean;
}

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Thrown for --help: the message is the usage text and the process should exit 0. */
export class HelpRequested extends ConfigError {
  constructor(usage: string) {
    super(usage, 0);
    this.name = 'HelpRequested';
  }
}

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function entries(schema: TObject): [string, TSchema & ConfigMeta][] {
  return Object.entries(schema.properties);
}

function isBoolean(prop: TSchema): boolean {
  return (prop as { type?: unknown }).type === 'boolean';
}

/** The values a property allows, when it is a choice (an enum, or a union of literals). */
function choices(prop: TSchema): unknown[] | undefined {
  const p = prop as { enum?: unknown[]; anyOf?: { const?: unknown }[] };
  if (Array.isArray(p.enum)) return p.enum;
  if (Array.isArray(p.anyOf) && p.anyOf.every((s) => 'const' in s)) return p.anyOf.map((s) => s.const);
  return undefined;
}

/** Edit distance, for "did you mean" on a mistyped environment variable. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

export function usage(name: string, summary: string, schema: TObject): string {
  const lines = [`Usage: ${name} [flags]`, '', summary, '', 'Flags:'];
  for (const [key, prop] of entries(schema)) {
    const flag = `--${prop.flag ?? kebab(key)}${isBoolean(prop) ? '' : ' <value>'}`;
    const dflt = (prop as { default?: unknown }).default;
    const extras = [
      prop.env ? `env ${prop.env}` : undefined,
      dflt !== undefined && dflt !== '' && !prop.secret ? `default ${JSON.stringify(dflt)}` : undefined,
    ].filter(Boolean);
    lines.push(`  ${flag.padEnd(30)} ${prop.description ?? ''}${extras.length ? ` (${extras.join(', ')})` : ''}`);
  }
  lines.push(`  ${'-h, --help'.padEnd(30)} Show this help and exit.`);
  lines.push(`  ${'--version'.padEnd(30)} Print the version and exit.`);
  return lines.join('\n');
}

export function loadConfig<T extends TObject>(
  schema: T,
  opts: {
    name: string;
    summary: string;
    /** Printed by --version. */
    version?: string;
    argv?: string[];
    env?: NodeJS.ProcessEnv;
    /** The prefix of the service's own variables (`IMAGELIST_`): one that sets nothing is warned of. */
    envPrefix?: string;
    /** Receives the warnings, e.g. of a mistyped variable name (logged once a logger exists). */
    warn?: (message: string) => void;
  },
): Static<T> {
  // `pnpm start -- --flag` hands the `--` through; it separates nothing here.
  const given = opts.argv ?? process.argv.slice(2);
  const argv = given[0] === '--' ? given.slice(1) : given;
  const env = opts.env ?? process.env;
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
  };
  for (const [key, prop] of entries(schema)) {
    options[prop.flag ?? kebab(key)] = { type: isBoolean(prop) ? 'boolean' : 'string' };
  }

  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${usage(opts.name, opts.summary, schema)}`);
  }
  if (flags.help) throw new HelpRequested(usage(opts.name, opts.summary, schema));
  if (flags.version) throw new HelpRequested(`${opts.name} ${opts.version ?? 'unknown'}`);
  if (opts.warn && opts.envPrefix) warnUnknownEnv(schema, env, opts.envPrefix, opts.warn);

  const raw: Record<string, unknown> = {};
  const empty: string[] = [];
  for (const [key, prop] of entries(schema)) {
    const fromFlag = flags[prop.flag ?? kebab(key)];
    const fromEnv = prop.env ? env[prop.env] : undefined;
    if (fromFlag !== undefined) raw[key] = fromFlag;
    else if (fromEnv === '' && prop.emptyEnvRefused) empty.push(`  ${prop.env}: is set but empty; unset it, or give a value`);
    else if (fromEnv !== undefined && fromEnv !== '') raw[key] = fromEnv;
  }
  if (empty.length) throw new ConfigError(`invalid configuration:\n${empty.join('\n')}`);

  const value = Value.Convert(schema, Value.Default(schema, raw));
  if (!Value.Check(schema, value)) {
    // One line per setting, naming the allowed values of a choice rather than AJV's one line per
    // alternative ("must be equal to constant", four times).
    const byKey = new Map<string, Set<string>>();
    for (const e of Value.Errors(schema, value)) {
      const key =
        e.instancePath.replace(/^\//, '').split('/')[0] || String((e.params as { requiredProperties?: string[] }).requiredProperties ?? '');
      const prop = (schema.properties as Record<string, TSchema>)[key];
      const allowed = prop && choices(prop);
      const message = allowed ? `must be one of ${allowed.map(String).join(', ')} (got ${JSON.stringify(raw[key])})` : e.message;
      byKey.set(key, (byKey.get(key) ?? new Set()).add(message));
    }
    const problems = [...byKey].map(([key, messages]) => {
      const prop = (schema.properties as Record<string, ConfigMeta>)[key];
      const where = prop ? `--${prop.flag ?? kebab(key)}${prop.env ? ` / ${prop.env}` : ''}` : key;
      return `  ${where}: ${[...messages].join('; ')}`;
    });
    throw new ConfigError(`invalid configuration:\n${problems.join('\n')}`);
  }
  return value;
}

function warnUnknownEnv(schema: TObject, env: NodeJS.ProcessEnv, prefix: string, warn: (message: string) => void): void {
  const known = entries(schema)
    .map(([, prop]) => prop.env)
    .filter((v): v is string => v !== undefined);
  for (const name of Object.keys(env)) {
    if (!name.startsWith(prefix) || known.includes(name)) continue;
    const nearest = known.reduce((best, k) => (distance(name, k) < distance(name, best) ? k : best), known[0]!);
    const hint = distance(name, nearest) <= 3 ? `; did you mean ${nearest}?` : '';
    warn(`environment variable ${name} is not a setting of this service and is ignored${hint}`);
  }
}
