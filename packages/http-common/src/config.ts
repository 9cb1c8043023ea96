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
  lines.push(`  ${'--help'.padEnd(30)} Show this help and exit.`);
  return lines.join('\n');
}

export function loadConfig<T extends TObject>(
  schema: T,
  opts: { name: string; summary: string; argv?: string[]; env?: NodeJS.ProcessEnv },
): Static<T> {
  // `pnpm start -- --flag` hands the `--` through; it separates nothing here.
  const given = opts.argv ?? process.argv.slice(2);
  const argv = given[0] === '--' ? given.slice(1) : given;
  const env = opts.env ?? process.env;
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
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

  const raw: Record<string, unknown> = {};
  for (const [key, prop] of entries(schema)) {
    const fromFlag = flags[prop.flag ?? kebab(key)];
    const fromEnv = prop.env ? env[prop.env] : undefined;
    if (fromFlag !== undefined) raw[key] = fromFlag;
    else if (fromEnv !== undefined && fromEnv !== '') raw[key] = fromEnv;
  }

  const value = Value.Convert(schema, Value.Default(schema, raw));
  if (!Value.Check(schema, value)) {
    const problems = Value.Errors(schema, value).map((e) => {
      const key = e.instancePath.replace(/^\//, '') || String((e.params as { requiredProperties?: string[] }).requiredProperties ?? '');
      const prop = (schema.properties as Record<string, ConfigMeta>)[key];
      const where = prop ? `--${prop.flag ?? kebab(key)}${prop.env ? ` / ${prop.env}` : ''}` : key;
      return `  ${where}: ${e.message}`;
    });
    throw new ConfigError(`invalid configuration:\n${problems.join('\n')}`);
  }
  return value;
}
