import Type from 'typebox';
import { describe, expect, it } from 'vitest';
import { ConfigError, HelpRequested, loadConfig, parseListen } from '../src/index.js';

const Schema = Type.Object({
  listen: Type.String({ default: ':8000', env: 'APP_LISTEN', description: 'where to listen' }),
  poolSize: Type.Integer({ minimum: 1, default: 10, env: 'APP_POOL_SIZE' }),
  debug: Type.Boolean({ default: false, env: 'APP_DEBUG' }),
  password: Type.Optional(Type.String({ env: 'APP_PASSWORD', secret: true })),
});
const load = (argv: string[], env: Record<string, string> = {}) => loadConfig(Schema, { name: 'app', summary: 'An app.', argv, env });

describe('loadConfig', () => {
  it('takes defaults, then env, then flags', () => {
    expect(load([])).toEqual({ listen: ':8000', poolSize: 10, debug: false });
    expect(load([], { APP_LISTEN: ':9000', APP_POOL_SIZE: '3', APP_DEBUG: 'true' })).toEqual({ listen: ':9000', poolSize: 3, debug: true });
    expect(load(['--listen', ':7000', '--pool-size', '5', '--debug'], { APP_LISTEN: ':9000' })).toEqual({
      listen: ':7000',
      poolSize: 5,
      debug: true,
    });
  });

  it('names the flag and env var of an invalid value', () => {
    expect(() => load(['--pool-size', 'zero'])).toThrow(/--pool-size \/ APP_POOL_SIZE/);
    expect(() => load([], { APP_POOL_SIZE: '0' })).toThrow(ConfigError);
  });

  it('reads an empty variable as unset, unless the setting refuses it (its absence would turn a protection off)', () => {
    expect(load([], { APP_LISTEN: '', APP_POOL_SIZE: '' })).toEqual({ listen: ':8000', poolSize: 10, debug: false });
    const Guarded = Type.Object({
      tokensFile: Type.Optional(Type.String({ minLength: 1, env: 'APP_TOKENS_FILE', emptyEnvRefused: true })),
    });
    const guarded = (env: Record<string, string>) => loadConfig(Guarded, { name: 'app', summary: '', argv: [], env });
    expect(guarded({})).toEqual({});
    expect(guarded({ APP_TOKENS_FILE: '/t.yaml' })).toEqual({ tokensFile: '/t.yaml' });
    expect(() => guarded({ APP_TOKENS_FILE: '' })).toThrow(
      'invalid configuration:\n  APP_TOKENS_FILE: is set but empty; unset it, or give a value',
    );
  });

  it('names the allowed values of a choice in one line', () => {
    const Choice = Type.Object({ mode: Type.Union([Type.Literal('a'), Type.Literal('b')], { default: 'a', env: 'APP_MODE' }) });
    expect(() => loadConfig(Choice, { name: 'app', summary: '', argv: ['--mode', 'c'], env: {} })).toThrow(
      'invalid configuration:\n  --mode / APP_MODE: must be one of a, b (got "c")',
    );
  });

  it('warns of a variable with the service prefix that sets nothing, suggesting the nearest', () => {
    const warnings: string[] = [];
    loadConfig(Schema, {
      name: 'app',
      summary: '',
      argv: [],
      env: { APP_POOLSIZE: '3', APP_X: '1', OTHER_THING: '1' },
      envPrefix: 'APP_',
      warn: (w) => warnings.push(w),
    });
    expect(warnings).toEqual([
      'environment variable APP_POOLSIZE is not a setting of this service and is ignored; did you mean APP_POOL_SIZE?',
      'environment variable APP_X is not a setting of this service and is ignored',
    ]);
  });

  it('answers --version and -h', () => {
    expect(() => loadConfig(Schema, { name: 'app', summary: '', version: '1.2.3', argv: ['--version'], env: {} })).toThrow(
      new HelpRequested('app 1.2.3'),
    );
    expect(() => load(['-h'])).toThrow(HelpRequested);
  });

  it('ignores a leading -- as package managers pass it through', () => {
    expect(load(['--', '--pool-size', '4']).poolSize).toBe(4);
  });

  it('rejects unknown flags', () => {
    expect(() => load(['--nope'])).toThrow(/nope/);
  });

  it('answers --help with usage that lists flags, env vars and defaults but no secret values', () => {
    try {
      load(['--help'], { APP_PASSWORD: 'hunter2' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(HelpRequested);
      const text = (err as Error).message;
      expect(text).toContain('--listen <value>');
      expect(text).toContain('env APP_LISTEN');
      expect(text).toContain('default ":8000"');
      expect(text).toContain('--debug ');
      expect(text).not.toContain('hunter2');
    }
  });
});

describe('parseListen', () => {
  it.each([
    [':8000', { host: '0.0.0.0', port: 8000 }],
    ['127.0.0.1:80', { host: '127.0.0.1', port: 80 }],
    ['[::1]:8443', { host: '::1', port: 8443 }],
    ['localhost:3000', { host: 'localhost', port: 3000 }],
    ['8080', { host: '0.0.0.0', port: 8080 }],
  ])('%s', (input, expected) => expect(parseListen(input)).toEqual(expected));
  it.each(['', ':', 'host', ':99999', 'a:b'])('rejects %j', (input) => expect(() => parseListen(input)).toThrow(/listen address/));
});
