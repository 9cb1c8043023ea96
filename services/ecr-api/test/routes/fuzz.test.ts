import { GetRepositoryPolicyCommand, ListTagsForResourceCommand, paginateDescribeRepositories, type ECRClient } from '@aws-sdk/client-ecr';
import {
  GetGroupCommand,
  ListAccessKeysCommand,
  ListPolicyVersionsCommand,
  ListUserTagsCommand,
  paginateListUsers,
  type IAMClient,
} from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import fc from 'fast-check';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, directEcr, newAccount, testApp } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';

// Generated malformed requests, with a valid token, over real HTTP (raw paths: no client
// normalises `..` or `%2F`) at the app wired to moto: never a 5xx or a 2xx, every error a
// problem+json naming the offending field, and nothing changed in moto (read straight, not through
// the service). A fixed seed keeps CI deterministic; FUZZ_SEED=<n> explores others.
const ORG = 'spindev';
const SEED = Number(process.env.FUZZ_SEED ?? 20261206);
let app: App;
let port: number;
let account: string;
let ecr: ECRClient;
let iam: IAMClient;

beforeAll(async () => {
  app = await testApp({ org: ORG });
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as AddressInfo).port;
  account = newAccount();
  ecr = await directEcr(account);
  iam = await directIam(account);
  const setup = [
    ['POST', `/v1/ecr/${account}/repositories/grp`, { RepositoryName: 'app', Tags: [{ Key: 'team', Value: 'a' }], Groups: ['g2'] }],
    ['POST', `/v1/ecr/${account}/repositories/grp/app/users`, { UserName: 'ci', Tags: [{ Key: 'team', Value: 'a' }] }],
    ['PUT', `/v1/ecr/${account}/repositories/grp/app/users/ci`, { ResetKey: true }],
  ] as const;
  for (const [method, path, body] of setup) expect((await send(method, path, JSON.stringify(body))).status).toBe(200);
});
afterAll(async () => {
  await app?.close();
});

function send(
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = { 'content-type': 'application/json' },
): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers: { ...auth, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type'] ?? ''), text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** What moto holds for the account: repositories, their tags and policies; the org's IAM users, keys, tags, group, policy versions. */
async function snapshot(): Promise<unknown> {
  const repositories: unknown[] = [];
  for await (const page of paginateDescribeRepositories({ client: ecr }, {})) {
    for (const r of page.repositories ?? []) {
      const tags = (await ecr.send(new ListTagsForResourceCommand({ resourceArn: r.repositoryArn }))).tags;
      const policy = await ecr.send(new GetRepositoryPolicyCommand({ repositoryName: r.repositoryName })).then(
        (p) => p.policyText,
        (err: Error) => err.name,
      );
      const { createdAt, ...rest } = r;
      repositories.push({ ...rest, createdAt: createdAt?.getTime(), tags, policy });
    }
  }
  const users: unknown[] = [];
  for await (const page of paginateListUsers({ client: iam }, { PathPrefix: `/spinup/${ORG}/` })) {
    for (const u of page.Users ?? []) {
      const tags = (await iam.send(new ListUserTagsCommand({ UserName: u.UserName }))).Tags;
      const keys = (await iam.send(new ListAccessKeysCommand({ UserName: u.UserName }))).AccessKeyMetadata?.map((k) => k.AccessKeyId);
      users.push({ name: u.UserName, path: u.Path, tags, keys });
    }
  }
  const members = (await iam.send(new GetGroupCommand({ GroupName: `SpinupECRAdminGroup-${ORG}` }))).Users?.map((u) => u.UserName);
  const versions = (
    await iam.send(new ListPolicyVersionsCommand({ PolicyArn: `arn:aws:iam::${account}:policy/spinup/${ORG}/SpinupECRAdminPolicy-${ORG}` }))
  ).Versions?.map((v) => v.VersionId);
  return { repositories, users, members, versions };
}

// ---- values that are never valid where they are put -------------------------------------------

const text = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('\u0000', 'a\nb', '\u202e', '😀', '../', '%2F', 'A'.repeat(3000), '__proto__', 'constructor'),
);
/** Any JSON value. */
const junk = fc.oneof(
  text,
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
);
const COMPONENT = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const badComponent = fc
  .oneof(text, fc.constantFrom('', 'App', 'a..b', '-a', 'a/b', '.', '..', 'a'.repeat(255)))
  .filter((s) => !COMPONENT.test(s));
const notString = junk.filter((v) => typeof v !== 'string' && v !== null);
const notAllowed = (allowed: readonly unknown[]) => junk.filter((v) => !allowed.includes(v as never));
const badTag = fc.oneof(
  junk.filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)),
  fc.record({ Key: fc.oneof(notString, fc.constant(''), fc.constant('k'.repeat(129))), Value: fc.string({ maxLength: 5 }) }),
  fc.record({ Key: fc.string({ minLength: 1, maxLength: 5 }), Value: fc.oneof(notString, fc.constant('v'.repeat(257))) }),
  fc.record({ Key: fc.constant('k') }),
  fc.record({ Key: fc.constant('k'), Value: fc.constant('v'), Extra: junk }),
);
const badTags = fc.oneof(
  junk.filter((v) => v !== null && !Array.isArray(v)),
  fc
    .tuple(fc.array(fc.record({ Key: fc.constantFrom('a', 'b'), Value: fc.constant('v') }), { maxLength: 2 }), badTag)
    .map(([ok, bad]) => [...ok, bad]),
  fc.constant(Array.from({ length: 51 }, (_, i) => ({ Key: `k${i}`, Value: 'v' }))),
);
const BOOLS = [true, false, '1', 't', 'T', 'TRUE', 'true', 'True', '0', 'f', 'F', 'FALSE', 'false', 'False', '', null];
const badGroups = fc.oneof(
  junk.filter((v) => v !== null && !Array.isArray(v)),
  fc.array(badComponent, { minLength: 1, maxLength: 3 }),
  fc.constant(Array.from({ length: 101 }, (_, i) => `g${i}`)),
);

/** A body field made invalid, with the field an answer must name. */
type Bad = [field: string, value: unknown];
const bad = (field: string, value: fc.Arbitrary<unknown>): fc.Arbitrary<Bad> => value.map((v) => [field, v] as Bad);
const extraField = fc
  .string({ minLength: 1, maxLength: 12 })
  .filter(
    (k) =>
      ![
        'RepositoryName',
        'ScanOnPush',
        'ImageTagMutability',
        'EncryptionType',
        'KmsKeyId',
        'Groups',
        'Tags',
        'UserName',
        'ResetKey',
        '__proto__',
      ].includes(k),
  );

const createRepository = fc.oneof(
  bad('RepositoryName', badComponent),
  bad('RepositoryName', notString),
  bad('ScanOnPush', notAllowed(BOOLS)),
  bad('ImageTagMutability', notAllowed(['MUTABLE', 'IMMUTABLE', '', null])),
  bad('EncryptionType', notAllowed(['AES256', 'KMS', '', null])),
  bad('KmsKeyId', fc.oneof(notString, fc.constant('k'.repeat(2049)))),
  bad('Groups', badGroups),
  bad('Tags', badTags),
);
const updateRepository = fc.oneof(
  bad('ScanOnPush', notAllowed(BOOLS)),
  bad('Groups', badGroups),
  bad('Tags', badTags),
  bad('RepositoryName', fc.constant('app')),
);
const createUser = fc.oneof(
  bad('UserName', fc.oneof(notString, fc.constantFrom('', 'a/b', 'a b', 'ü', 'u'.repeat(63)))),
  bad(
    'Groups',
    fc.oneof(
      junk.filter((v) => v !== null && !Array.isArray(v)),
      fc.array(text, { minLength: 1, maxLength: 2 }),
    ),
  ),
  bad('Tags', fc.oneof(badTags, fc.constant([{ Key: 'k!', Value: 'v' }]), fc.constant([{ Key: 'k', Value: 'a\u0007' }]))),
);
const updateUser = fc.oneof(
  bad('ResetKey', notAllowed([true, false, null])),
  bad('Tags', fc.oneof(badTags, fc.constant([{ Key: 'k#', Value: 'v' }]))),
  bad('UserName', fc.constant('ci')),
);

/** A body with the bad field (maybe a second one), or an extra field; the names an error may give. */
function body(fields: fc.Arbitrary<Bad>, valid: Record<string, unknown>) {
  return fc.oneof(
    fc.tuple(fields, fc.option(fields, { nil: undefined })).map(([a, b]) => ({
      body: { ...valid, [a[0]]: a[1], ...(b ? { [b[0]]: b[1] } : {}) },
      fields: [a[0], ...(b ? [b[0]] : [])],
    })),
    fc.tuple(extraField, junk).map(([k, v]) => ({ body: { ...valid, [k]: v }, fields: [k] })),
  );
}

interface Case {
  method: string;
  path: string;
  payload?: string;
  /** Answers may name these: `body.X...`, `params.X`, `body` (or a fixed detail for JSON that is not a body). */
  fields: string[];
  headers?: Record<string, string>;
}

const r = () => `/v1/ecr/${account}/repositories/grp`;
const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  'application/x-www-form-urlencoded',
  'application/xml',
  'multipart/form-data; boundary=x',
  '',
);
const withBody = (method: string, path: () => string, arb: fc.Arbitrary<{ body: Record<string, unknown>; fields: string[] }>) =>
  fc.tuple(arb, contentType).map(([b, type]): Case => ({
    method,
    path: path(),
    payload: JSON.stringify(b.body),
    fields: b.fields.map((f) => `body.${f}`),
    headers: type ? { 'content-type': type } : {},
  }));

/** A body that is not an object, or not JSON at all. */
const notABody = fc
  .tuple(
    fc.constantFrom<[string, () => string]>(
      ['POST', r],
      ['PUT', () => `${r()}/app`],
      ['POST', () => `${r()}/app/users`],
      ['PUT', () => `${r()}/app/users/ci`],
    ),
    fc.oneof(
      junk.filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)).map((v) => JSON.stringify(v)),
      fc.constantFrom(
        '',
        ' ',
        '{',
        '{"RepositoryName":',
        '[1,',
        '\u0000',
        'RepositoryName=x',
        '{"__proto__":{"x":1}}',
        '{"constructor":{"prototype":{}}}',
      ),
    ),
  )
  .map(([[method, path], payload]): Case => ({ method, path: path(), payload, fields: ['body'] }));

/** Path parameters that are never valid, raw or percent-encoded (slashes and dots too). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const encode = (s: string) => encodeURIComponent(s.replace(LONE_SURROGATE, '\uFFFD')).replace(/\./g, '%2E');
const badParam = fc.oneof(
  badComponent.filter((s) => s !== '').map(encode),
  fc.constantFrom('%2F', '%2e%2e', 'a%2Fb', '%E0%A4%A', 'app%00', 'a%20b'),
);
const badAccount = fc
  .oneof(
    fc.stringMatching(/^[0-9]{13,20}$/),
    fc.stringMatching(/^[0-9]{1,11}$/),
    fc.constantFrom('abcdefghijkl', '12345678901a', '%31%32', '-12345678901', '1234567890.1'),
    text.map(encode),
  )
  .filter((s) => !/^[0-9]{12}$/.test(s));
const IMAGE_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const badTag1 = fc.oneof(
  fc.constantFrom('.x', '-x', 't'.repeat(129), '%2F', 'a%2Fb', '%2e%2e'),
  text.filter((s) => s !== '' && !IMAGE_TAG.test(s)).map(encode),
);
const ROUTES: [method: string, template: string][] = [
  ['GET', '/v1/ecr/{account}/repositories'],
  ['POST', '/v1/ecr/{account}/repositories/{group}'],
  ['GET', '/v1/ecr/{account}/repositories/{group}'],
  ['GET', '/v1/ecr/{account}/repositories/{group}/{name}'],
  ['PUT', '/v1/ecr/{account}/repositories/{group}/{name}'],
  ['DELETE', '/v1/ecr/{account}/repositories/{group}/{name}'],
  ['GET', '/v1/ecr/{account}/repositories/{group}/{name}/images'],
  ['GET', '/v1/ecr/{account}/repositories/{group}/{name}/images/{tag}'],
  ['DELETE', '/v1/ecr/{account}/repositories/{group}/{name}/images/{tag}'],
  ['GET', '/v1/ecr/{account}/repositories/{group}/{name}/users'],
  ['POST', '/v1/ecr/{account}/repositories/{group}/{name}/users'],
  ['GET', '/v1/ecr/{account}/repositories/{group}/{name}/users/{user}'],
  ['PUT', '/v1/ecr/{account}/repositories/{group}/{name}/users/{user}'],
  ['DELETE', '/v1/ecr/{account}/repositories/{group}/{name}/users/{user}'],
  ['GET', '/v1/ecr/{account}/scanRepositories'],
  ['GET', '/v1/ecr/{account}/scanFindings'],
];
const badPath = fc
  .record({
    route: fc.constantFrom(...ROUTES),
    broken: fc.constantFrom('account', 'group', 'name', 'tag', 'user'),
    account: badAccount,
    param: badParam,
    tag: badTag1,
    user: fc.constantFrom('a%2Fb', 'u'.repeat(63), '%C3%BC', 'a%20b', '%2e%2e%2F', 'u'.repeat(61)),
    query: fc.constantFrom('', '?x=1', '?account=123456789012', '?__proto__=1', '?a=%00'),
  })
  .filter(({ route, broken }) => broken === 'account' || route[1].includes(`{${broken}}`))
  .map(({ route: [method, template], broken, account: acct, param, tag, user, query }): Case => {
    const values: Record<string, string> = { account, group: 'grp', name: 'app', tag: 'v1', user: 'ci' };
    values[broken] = broken === 'account' ? acct : broken === 'tag' ? tag : broken === 'user' ? user : param;
    const path = template.replace(/\{(\w+)\}/g, (_, k: string) => values[k]!) + query;
    // 'u'.repeat(61) is a valid pattern whose IAM name "app-uuu..." is too long: a 400 naming the user.
    return { method, path, payload: method === 'POST' || method === 'PUT' ? '{}' : undefined, fields: [`params.${broken}`] };
  });

/** Transport-level oddities: a body over the 64 KiB limit, a compressed one. */
const oddTransport = fc
  .constantFrom<Case>(
    {
      method: 'POST',
      path: '/v1/ecr/{account}/repositories/grp',
      payload: JSON.stringify({ RepositoryName: 'a'.repeat(70_000) }),
      fields: ['body'],
    },
    {
      method: 'PUT',
      path: '/v1/ecr/{account}/repositories/grp/app/users/ci',
      payload: '{"ResetKey":true}',
      fields: ['body'],
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    },
  )
  .map((c) => ({ ...c, path: c.path.replace('{account}', account) }));

const cases = fc.oneof(
  { arbitrary: withBody('POST', r, body(createRepository, { RepositoryName: 'fuzzed' })), weight: 5 },
  {
    arbitrary: withBody('PUT', () => `${r()}/app`, body(updateRepository, { ScanOnPush: 'true', Tags: [{ Key: 'fuzz', Value: 'x' }] })),
    weight: 5,
  },
  { arbitrary: withBody('POST', () => `${r()}/app/users`, body(createUser, { UserName: 'fuzzed' })), weight: 5 },
  { arbitrary: withBody('PUT', () => `${r()}/app/users/ci`, body(updateUser, { ResetKey: true })), weight: 5 },
  { arbitrary: notABody, weight: 5 },
  { arbitrary: badPath, weight: 10 },
  { arbitrary: oddTransport, weight: 1 },
);

describe('fuzzed malformed requests', () => {
  it('are refused with a 4xx problem naming what is wrong, never a 5xx, and change nothing in moto', async () => {
    const before = await snapshot();
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(cases, async (c) => {
        const res = await send(c.method, c.path, c.payload, c.headers);
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        const what = `${c.method} ${c.path.slice(0, 200)} ${String(c.payload).slice(0, 300)} → ${res.status} ${res.text.slice(0, 300)}`;
        expect(res.status, what).toBeGreaterThanOrEqual(400);
        expect(res.status, what).toBeLessThan(500);
        expect(res.type, what).toMatch(/^application\/problem\+json/);
        const problem = JSON.parse(res.text) as { status: number; detail: string; errors?: { field: string }[] };
        expect(problem.status, what).toBe(res.status);
        if (res.status === 404 || res.status === 405) {
          // No route: only a path whose broken parameter holds a slash, or is empty, or "..".
          expect(c.fields[0]!.startsWith('params.'), what).toBe(true);
          expect(problem.detail, what).toMatch(/^No route for |is not allowed on /);
          return;
        }
        if (res.status === 414) {
          // A path parameter longer than the router takes (1,024 characters; the longest valid one is 254).
          expect(c.path.length, what).toBeGreaterThan(1024);
          return;
        }
        if (res.status === 415) {
          expect(c.headers?.['content-encoding'], what).toBe('gzip');
          return;
        }
        if (res.status === 413) {
          expect(c.payload!.length, what).toBeGreaterThan(64 * 1024);
          return;
        }
        expect(res.status, what).toBe(400);
        if (c.fields[0] === 'body' && !problem.errors) {
          // Not JSON: there is no field to name (a prototype key is named: body.…__proto__).
          expect(problem.detail, what).toMatch(/not valid JSON|body is empty/);
          return;
        }
        if (c.fields[0]!.startsWith('params.') && !problem.errors) {
          expect(problem.detail, what).toMatch(/URL is malformed/);
          return;
        }
        const named = (problem.errors ?? []).map((e) => e.field);
        expect(named.length, what).toBeGreaterThan(0);
        for (const field of named) {
          expect(
            c.fields.some((f) => field === f || field.startsWith(`${f}.`)),
            what,
          ).toBe(true);
        }
      }),
      { numRuns: 3000, seed: SEED },
    );
    expect([...seen.values()].reduce((a, b) => a + b, 0)).toBe(3000);
    expect(seen.get(400)).toBeGreaterThan(2000);
    expect(await snapshot()).toEqual(before);
  }, 60_000);
});

describe('valid input at the limits', () => {
  it('is accepted, or refused with a 400 naming the field; never a 5xx from AWS refusing what the service passed on', async () => {
    const acct = newAccount();
    const repos = `/v1/ecr/${acct}/repositories`;
    const tags = (n: number, key = (i: number) => `${String(i).padStart(3, '0')}${'ķ'.repeat(125)}`) =>
      Array.from({ length: n }, (_, i) => ({ Key: key(i), Value: `${'é '.repeat(127)}@_` }));
    const groups = (n: number, length: number) => Array.from({ length: n }, (_, i) => `${String(i).padStart(3, '0')}${'x'.repeat(length)}`);
    const cases: [method: string, path: string, body: unknown, status: number, field?: string][] = [
      // {group}/{name}: 256 characters at most.
      ['POST', `${repos}/${'g'.repeat(254)}`, { RepositoryName: 'n' }, 200],
      ['POST', `${repos}/${'g'.repeat(200)}`, { RepositoryName: 'n'.repeat(55) }, 200],
      ['POST', `${repos}/${'g'.repeat(200)}`, { RepositoryName: 'n'.repeat(56) }, 400, 'body.RepositoryName'],
      ['POST', `${repos}/${'g'.repeat(255)}`, { RepositoryName: 'n' }, 400, 'params.group'],
      // 47 caller tags of the longest keys and values, and a KMS key id, 100 groups of the longest names.
      ['POST', `${repos}/grp`, { RepositoryName: 'full', Tags: tags(47), KmsKeyId: 'k'.repeat(2048) }, 200],
      ['POST', `${repos}/grp`, { RepositoryName: 'over', Tags: tags(48) }, 400, 'body.Tags'],
      // SetRepositoryPolicy takes 10,240 characters: 100 groups of 95 characters, 38 of the longest (254).
      ['POST', `${repos}/grp`, { RepositoryName: 'grouped', Groups: groups(100, 92) }, 200],
      ['PUT', `${repos}/grp/grouped`, { Groups: groups(38, 251) }, 200],
      ['PUT', `${repos}/grp/grouped`, { Groups: groups(39, 251) }, 400, 'body.Groups'],
      ['POST', `${repos}/grp`, { RepositoryName: 'overgrouped', Groups: groups(100, 93) }, 400, 'body.Groups'],
      ['PUT', `${repos}/grp/full`, { Tags: tags(47) }, 200],
      ['PUT', `${repos}/grp/full`, { Tags: tags(1, () => 'new') }, 400, 'body.Tags'],
      ['PUT', `${repos}/grp/grouped`, { Tags: tags(47), ScanOnPush: 'T', Groups: [] }, 200],
      // IAM user names {name}-{user}: 64 characters at most; 46 caller tags (IAM: 50).
      ['POST', `${repos}/grp/full/users`, { UserName: 'u'.repeat(59), Tags: tags(46) }, 200],
      ['POST', `${repos}/grp/full/users`, { UserName: 'u'.repeat(60) }, 400, 'body.UserName'],
      ['POST', `${repos}/grp/full/users`, { UserName: 'v', Tags: tags(47) }, 400, 'body.Tags'],
      ['PUT', `${repos}/grp/full/users/${'u'.repeat(59)}`, { ResetKey: true, Tags: tags(46) }, 200],
      ['PUT', `${repos}/grp/full/users/${'u'.repeat(59)}`, { Tags: tags(1, () => 'new') }, 400, 'body.Tags'],
      ['GET', `${repos}/grp/full/images/${'t'.repeat(128)}`, undefined, 404],
      ['DELETE', `${repos}/grp/full/images/${'t'.repeat(128)}`, undefined, 404],
      ['DELETE', `${repos}/grp/full`, undefined, 200],
    ];
    for (const [method, path, payload, status, field] of cases) {
      const res = await send(method, path, payload === undefined ? undefined : JSON.stringify(payload));
      const what = `${method} ${path.slice(0, 120)} → ${res.status} ${res.text.slice(0, 300)}`;
      expect(res.status, what).toBe(status);
      if (field)
        expect(
          (JSON.parse(res.text) as { errors: { field: string }[] }).errors.map((e) => e.field),
          what,
        ).toEqual([field]);
    }
  }, 20_000);
});
