import { ConfigError, HelpRequested, loadConfig } from '@platform/http-common';
import { describe, expect, it } from 'vitest';
import { ConfigSchema, describeConfig, readConfig, resolveConfig, SUMMARY } from '../src/config.js';

const FULL = {
  listenAddress: '127.0.0.1:9000',
  account: { region: 'us-east-2', akid: 'AKIAFILEKEY000000001', secret: 'file-secret-value', externalId: 'ext-1', role: 'SpinupRole' },
  token: 'file-token-value',
  org: 'spindev',
  logLevel: 'debug',
};

const files = (content: Record<string, string>) => (path: string) => {
  if (!(path in content)) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
  return content[path]!;
};

/** Flags and environment as the service reads them, with a fake file system for --config; errors reject. */
function read(argv: string[], env: Record<string, string> = {}, fs: Record<string, string> = {}) {
  return Promise.resolve().then(() =>
    resolveConfig(loadConfig(ConfigSchema, { name: 'ecr-api', summary: SUMMARY, argv, env }), env, files(fs)),
  );
}

describe('configuration', () => {
  it('reads the original JSON config from a file', async () => {
    const config = await read(['--config', '/etc/ecr-api.json'], {}, { '/etc/ecr-api.json': JSON.stringify(FULL) });
    expect(config).toEqual({
      listen: '127.0.0.1:9000',
      logLevel: 'debug',
      org: 'spindev',
      token: 'file-token-value',
      aws: {
        region: 'us-east-2',
        role: 'SpinupRole',
        externalId: 'ext-1',
        credentials: { accessKeyId: 'AKIAFILEKEY000000001', secretAccessKey: 'file-secret-value' },
        sessionDurationSeconds: 3600,
        listStrategy: 'tagging',
        deadlineMs: 25_000,
      },
    });
  });

  it('reads API_CONFIG_FILE and API_CONFIG, matching keys case-insensitively like the Go original', async () => {
    const goStyle = JSON.stringify({
      ListenAddress: ':7000',
      Account: { Region: 'eu-west-1', Role: 'R', ExternalID: 'x1' },
      Token: 't',
      Org: 'o',
      Version: { Version: '1' },
    });
    const fromFile = await read([], { API_CONFIG_FILE: '/c.json' }, { '/c.json': goStyle });
    expect(fromFile).toMatchObject({ listen: ':7000', org: 'o', token: 't', aws: { region: 'eu-west-1', role: 'R', externalId: 'x1' } });
    const fromEnv = await read([], { API_CONFIG: goStyle });
    expect(fromEnv).toEqual(fromFile);
  });

  it('reads API_CONFIG as base64, as the original and its k8s chart do, with a trailing newline or wrapped lines', async () => {
    const json = JSON.stringify(FULL);
    const raw = await read([], { API_CONFIG: json });
    const b64 = Buffer.from(json).toString('base64');
    expect(await read([], { API_CONFIG: b64 })).toEqual(raw);
    expect(await read([], { API_CONFIG: `${b64}\n` })).toEqual(raw);
    // `base64 config.json` wraps its output every 76 characters.
    expect(await read([], { API_CONFIG: `${b64.replace(/.{76}/g, '$&\n')}\n` })).toEqual(raw);
    expect(await read([], { API_CONFIG: `\n${JSON.stringify(FULL, null, 2)}\n` })).toEqual(raw);
  });

  it('an explicit config file (--config / API_CONFIG_FILE) wins over API_CONFIG', async () => {
    const fs = { '/c.json': JSON.stringify(FULL) };
    const env = { API_CONFIG: Buffer.from(JSON.stringify({ ...FULL, org: 'from-env' })).toString('base64') };
    expect((await read(['--config', '/c.json'], env, fs)).org).toBe('spindev');
    expect((await read([], { ...env, API_CONFIG_FILE: '/c.json' }, fs)).org).toBe('spindev');
    expect((await read([], env, fs)).org).toBe('from-env');
  });

  it('says where a config is not JSON, never what it holds', async () => {
    const broken = '{\n  "token": "file-token-value",\n  "account": { "secret": "file-secret-value" },\n  "org": eyJMaXN0ZW\n}';
    const b64 = Buffer.from(broken).toString('base64');
    const cases: [Record<string, string>, Record<string, string>, RegExp][] = [
      [{ API_CONFIG: broken }, {}, /^API_CONFIG is not valid JSON: InvalidSymbol at line 4, column 10$/],
      [{ API_CONFIG: b64 }, {}, /^API_CONFIG \(base64\) is not valid JSON: InvalidSymbol at line 4, column 10$/],
      [
        { API_CONFIG_FILE: '/c.json' },
        { '/c.json': broken },
        /^config file \/c.json is not valid JSON: InvalidSymbol at line 4, column 10$/,
      ],
      // Neither JSON nor base64 (here: base64 cut short).
      [{ API_CONFIG: b64.slice(0, -1) }, {}, /^API_CONFIG is not valid JSON: InvalidSymbol at line 1, column 1$/],
      [{ API_CONFIG: '{"token": "file-token-value", "org": "o"' }, {}, /CloseBraceExpected at line 1, column 41$/],
    ];
    for (const [env, fs, expected] of cases) {
      const message = await read([], env, fs).then(
        () => '',
        (err: Error) => err.message,
      );
      expect(message).toMatch(expected);
      for (const secret of ['file-token-value', 'file-secret-value', 'eyJMaXN0ZW', b64.slice(0, 10), 'token', 'org']) {
        expect(message).not.toContain(secret);
      }
    }
  });

  it('lets flags and environment override the file; flags win over environment', async () => {
    const fs = { '/c.json': JSON.stringify(FULL) };
    const config = await read(
      [
        '--config',
        '/c.json',
        '--org',
        'flag-org',
        '--listen',
        ':8181',
        '--aws-endpoint',
        'http://127.0.0.1:5000',
        '--list-strategy',
        'describe',
      ],
      {
        ECR_API_ORG: 'env-org',
        ECR_API_ROLE: 'EnvRole',
        ECR_API_TOKEN: 'env-token',
        ECR_API_SESSION_DURATION: '900',
        ECR_API_LISTEN: ':1',
      },
      fs,
    );
    expect(config).toMatchObject({
      listen: ':8181',
      org: 'flag-org',
      token: 'env-token',
      aws: { role: 'EnvRole', endpoint: 'http://127.0.0.1:5000', listStrategy: 'describe', sessionDurationSeconds: 900 },
    });
  });

  it('defaults: listen :8080, info, tagging listing, default credential chain without akid, region from AWS_REGION', async () => {
    const config = await read([], {
      API_CONFIG: JSON.stringify({ token: 't', org: 'o', account: { role: 'R' } }),
      AWS_REGION: 'ap-south-1',
    });
    expect(config.listen).toBe(':8080');
    expect(config.logLevel).toBe('info');
    expect(config.aws.listStrategy).toBe('tagging');
    expect(config.aws.region).toBe('ap-south-1');
    expect(config.aws.credentials).toBeUndefined();
    expect(describeConfig(config)).toMatchObject({ credentials: 'default AWS credential chain', externalId: 'unset' });
  });

  it('names every missing required setting at once, with exit code 2', async () => {
    const err = await read([], {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(2);
    const message = (err as Error).message;
    for (const what of ['token is required', 'org is required', 'role is required', 'region is required']) expect(message).toContain(what);
  });

  it.each([
    [
      'akid without secret',
      { ...FULL, account: { ...FULL.account, secret: '' } },
      'account.akid and account.secret must be given together',
    ],
    ['a bad listen address', { ...FULL, listenAddress: 'nope' }, 'invalid listen address'],
    ['a bad region', { ...FULL, account: { ...FULL.account, region: 'moon' } }, 'region must be an AWS region name'],
    ['a non-string token', { ...FULL, token: 42 }, 'token'],
    ['a bad org', { ...FULL, org: 'two words' }, 'org must be 1-107 characters'],
    ['a bad role', { ...FULL, account: { ...FULL.account, role: 'no spaces' } }, 'account.role must be an IAM role name'],
    ['a bad endpoint', { ...FULL, account: { ...FULL.account, endpoint: 'ftp://x' } }, 'the AWS endpoint must be an http(s) URL'],
  ])('rejects %s without echoing secrets', async (_what, content, expected) => {
    const err = await read(['--config', '/c.json'], {}, { '/c.json': JSON.stringify(content) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(expected);
    expect((err as Error).message).not.toContain('file-secret-value');
    expect((err as Error).message).not.toContain('file-token-value');
  });

  // ":" is invalid in IAM group names (every POST users failed), "/" nests /spinup/{org}/ paths
  // across orgs, "," is invalid in tag values, and SpinupECRAdminPolicy-{org} holds at most 128.
  it.each(['spin:dev', 'spin/dev', 'a/../b', 'spin,dev', 'x'.repeat(108)])(
    'rejects the org %j, which IAM names cannot hold, with exit code 2',
    async (org) => {
      const fromFile = await read(['--config', '/c.json'], {}, { '/c.json': JSON.stringify({ ...FULL, org }) }).catch((e: unknown) => e);
      expect(fromFile).toBeInstanceOf(ConfigError);
      expect((fromFile as ConfigError).exitCode).toBe(2);
      expect((fromFile as Error).message).toContain('org must be 1-107 characters of letters, digits and _+=.@-');
      for (const [argv, env] of [[['--org', org], {}] as const, [[], { ECR_API_ORG: org }] as const]) {
        const err = await read([...argv, '--config', '/c.json'], env, { '/c.json': JSON.stringify(FULL) }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).exitCode).toBe(2);
        expect((err as Error).message).toMatch(/--org \/ ECR_API_ORG: /);
      }
    },
  );

  it('accepts an org of every character IAM names, paths and tag values share', async () => {
    const org = `Spin_dev+1=a.b@c-${'x'.repeat(90)}`;
    expect((await read(['--config', '/c.json'], {}, { '/c.json': JSON.stringify({ ...FULL, org }) })).org).toBe(org);
    expect((await read(['--org', org, '--config', '/c.json'], {}, { '/c.json': JSON.stringify(FULL) })).org).toBe(org);
  });

  it('treats blank file values as absent (the original\'s `"endpoint": ""`) and checks AWS_REGION too', async () => {
    const blank = { ...FULL, account: { ...FULL.account, endpoint: '', region: ' ' }, logLevel: 'DEBUG' };
    const config = await read([], { API_CONFIG: JSON.stringify(blank), AWS_REGION: 'eu-north-1' });
    expect(config.aws.endpoint).toBeUndefined();
    expect(config.aws.region).toBe('eu-north-1');
    expect(config.logLevel).toBe('debug');
    await expect(read([], { API_CONFIG: JSON.stringify(blank), AWS_REGION: 'mars' })).rejects.toThrow(/region must be an AWS region name/);
  });

  it.each(['warning', 'panic', 'verbose', 'loud'])(
    'runs a config logLevel the original knew no better than info (%s) at info, with a warning naming it',
    (level) => {
      const warnings: string[] = [];
      const config = readConfig({
        argv: [],
        env: { API_CONFIG: JSON.stringify({ ...FULL, logLevel: level }) },
        warn: (w) => warnings.push(w),
      });
      expect(config.logLevel).toBe('info');
      expect(warnings).toEqual([
        `logLevel "${level}" in the config is not one of fatal, error, warn, info, debug, trace; using info, as the original did`,
      ]);
    },
  );

  it('still refuses an unknown --log-level / ECR_API_LOG_LEVEL (settings of this service, not the original)', async () => {
    await expect(read(['--log-level', 'warning'], { API_CONFIG: JSON.stringify(FULL) })).rejects.toThrow(/log-level|logLevel/i);
  });

  it('reports unreadable and malformed config files clearly', async () => {
    await expect(read(['--config', '/missing.json'])).rejects.toThrow(/cannot read config file \/missing.json .*ENOENT/);
    await expect(read(['--config', '/bad.json'], {}, { '/bad.json': '{"token": ' })).rejects.toThrow(
      /config file \/bad.json is not valid JSON/,
    );
    await expect(read([], { API_CONFIG: '[1]' })).rejects.toThrow(/API_CONFIG must be a JSON object/);
  });

  it('rejects invalid flag values and unknown flags', async () => {
    await expect(read(['--list-strategy', 'guess'], { API_CONFIG: JSON.stringify(FULL) })).rejects.toThrow(/--list-strategy/);
    await expect(read(['--session-duration', '60'], { API_CONFIG: JSON.stringify(FULL) })).rejects.toThrow(/--session-duration/);
    await expect(read(['--bogus'])).rejects.toThrow(ConfigError);
  });

  it('--aws-deadline sets the AWS deadline per request in seconds (default 25, at most 29); TLS files come in pairs', async () => {
    const env = { API_CONFIG: JSON.stringify(FULL) };
    expect((await read(['--aws-deadline', '1.5'], env)).aws.deadlineMs).toBe(1500);
    expect((await read([], { ...env, ECR_API_AWS_DEADLINE: '29' })).aws.deadlineMs).toBe(29_000);
    await expect(read(['--aws-deadline', '30'], env)).rejects.toThrow(/--aws-deadline/);
    await expect(read(['--aws-deadline', '0'], env)).rejects.toThrow(/--aws-deadline/);
    const tls = await read(['--certfile', '/tls/tls.crt', '--keyfile', '/tls/tls.key'], env);
    expect(tls.tls).toEqual({ certfile: '/tls/tls.crt', keyfile: '/tls/tls.key' });
    expect(describeConfig(tls)).toMatchObject({ https: '/tls/tls.crt', awsDeadlineSeconds: 25 });
    await expect(read(['--keyfile', '/tls/tls.key'], env)).rejects.toThrow(/--certfile and --keyfile must be given together/);
  });

  it('--help is a HelpRequested with the usage of every flag', () => {
    let err: unknown;
    try {
      readConfig({ argv: ['--help'], env: {} });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HelpRequested);
    const usage = (err as Error).message;
    for (const flag of [
      '--config',
      '--listen',
      '--aws-endpoint',
      '--list-strategy',
      '--org',
      '--role',
      'API_CONFIG_FILE',
      'ECR_API_LISTEN',
    ]) {
      expect(usage).toContain(flag);
    }
  });
});
