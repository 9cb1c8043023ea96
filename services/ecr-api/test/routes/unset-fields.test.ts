import { DescribeRepositoriesCommand, GetRepositoryPolicyCommand, ListTagsForResourceCommand, type ECRClient } from '@aws-sdk/client-ecr';
import { GetUserCommand, ListAccessKeysCommand, ListGroupsForUserCommand, ListUserTagsCommand, type IAMClient } from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, directEcr, motoEndpoint, newAccount, testApp } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';
import { FaultProxy } from '../support/fault-proxy.js';

/**
 * Go clients marshal the original's request structs, which have no omitempty: every field they do
 * not set arrives as null (lists) or "" (strings). Such a field means "not set", as it did there.
 */
let app: App;
let proxy: FaultProxy;
let account: string;
let ecr: ECRClient;
let iam: IAMClient;

const base = () => `/v1/ecr/${account}/repositories`;
const req = (method: string, url: string, payload?: Record<string, unknown>) =>
  app.inject({ method: method as 'GET', url, headers: auth, ...(payload === undefined ? {} : { payload }) });
const reads = ['DescribeRepositories', 'ListTagsForResource', 'GetRepositoryPolicy', 'GetUser', 'ListAccessKeys', 'ListGroupsForUser'];
const writes = () => proxy.operations.filter((o) => !reads.includes(o) && o !== 'AssumeRole');

/** What AWS holds of a repository, apart from what carries its name. */
async function stored(name: string) {
  const repo = (await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [name] }))).repositories![0]!;
  const tags = (await ecr.send(new ListTagsForResourceCommand({ resourceArn: repo.repositoryArn }))).tags!;
  return {
    encryption: repo.encryptionConfiguration,
    scanning: repo.imageScanningConfiguration,
    mutability: repo.imageTagMutability,
    tags: tags.filter((t) => t.Key !== 'Name').sort((a, b) => (a.Key! < b.Key! ? -1 : 1)),
    policy: (await ecr.send(new GetRepositoryPolicyCommand({ repositoryName: name }))).policyText,
  };
}

/** An answer without the fields that carry the repository's name or creation time. */
function unnamed(body: Record<string, unknown>) {
  const { CreatedAt: _c, RepositoryArn: _a, RepositoryName: _n, RepositoryUri: _u, Tags, ...rest } = body;
  return { ...rest, Tags: (Tags as { Key: string }[]).filter((t) => t.Key !== 'Name') };
}

beforeAll(async () => {
  proxy = await new FaultProxy(motoEndpoint()).start();
  app = await testApp({ aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
  account = newAccount();
  ecr = await directEcr(account);
  iam = await directIam(account);
});
afterAll(async () => {
  await app?.close();
  await proxy?.stop();
});

describe('repositories', () => {
  beforeAll(async () => {
    expect((await req('POST', `${base()}/grp`, { RepositoryName: 'target' })).statusCode).toBe(200);
  });

  it('a create with every optional field null or "" creates exactly what a create without them does', async () => {
    const plain = await req('POST', `${base()}/grp`, { RepositoryName: 'plain' });
    expect(plain.statusCode).toBe(200);
    // What a Go client sends for RepositoryCreateRequest{RepositoryName: "gostyle"}, and the fields the original lacked.
    const go = await req('POST', `${base()}/grp`, {
      RepositoryName: 'gostyle',
      KmsKeyId: '',
      ScanOnPush: '',
      Groups: null,
      Tags: null,
      EncryptionType: null,
      ImageTagMutability: '',
    });
    expect(go.statusCode).toBe(200);
    expect(unnamed(go.json())).toEqual(unnamed(plain.json()));
    expect(go.json()).toMatchObject({ EncryptionType: 'AES256', KmsKeyId: '', ScanOnPush: 'false', Groups: [] });
    expect(await stored('grp/gostyle')).toEqual(await stored('grp/plain'));
    expect((await stored('grp/gostyle')).encryption?.encryptionType).toBe('AES256');
  });

  it('an update with ScanOnPush "", Groups null and Tags null changes nothing and writes nothing', async () => {
    expect((await req('POST', `${base()}/grp`, { RepositoryName: 'kept', ScanOnPush: 'true', Groups: ['friends'] })).statusCode).toBe(200);
    const before = await stored('grp/kept');
    const shown = (await req('GET', `${base()}/grp/kept`)).json();
    proxy.clear();
    const res = await req('PUT', `${base()}/grp/kept`, { ScanOnPush: '', Groups: null, Tags: null });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(shown);
    expect(writes()).toEqual([]);
    expect(await stored('grp/kept')).toEqual(before);
    // [] still resets the groups to the own group.
    expect((await req('PUT', `${base()}/grp/kept`, { Groups: [], ScanOnPush: '' })).json()).toMatchObject({
      Groups: [],
      ScanOnPush: 'true',
    });
  });

  it.each([
    ['POST', { RepositoryName: 'bad', Groups: 'friends' }, 'body.Groups', 'must be array'],
    ['POST', { RepositoryName: 'bad', Tags: { a: 'b' } }, 'body.Tags', 'must be array'],
    ['POST', { RepositoryName: 'bad', KmsKeyId: 42 }, 'body.KmsKeyId', 'must be string'],
    ['POST', { RepositoryName: 'bad', ImageTagMutability: 'SOMETIMES' }, 'body.ImageTagMutability', 'must be one of MUTABLE, IMMUTABLE'],
    ['POST', { RepositoryName: null }, 'body.RepositoryName', 'must be string'],
    ['POST', { RepositoryName: '' }, 'body.RepositoryName', expect.any(String)],
    ['PUT', { Groups: 'friends' }, 'body.Groups', 'must be array'],
    ['PUT', { Tags: [{ Key: '', Value: 'v' }] }, 'body.Tags.0.Key', 'must NOT have fewer than 1 characters'],
  ])('%s %j is still a 400 naming the field, and changes nothing', async (method, body, field, message) => {
    proxy.clear();
    const res = await req(method, method === 'POST' ? `${base()}/grp` : `${base()}/grp/target`, body);
    expect(res.statusCode).toBe(400);
    // Only what is wrong with the value: not also "must be null" from the null alternative.
    expect(res.json().errors).toEqual([{ field, message }]);
    expect(proxy.operations).toEqual([]);
  });
});

describe('users', () => {
  const users = () => `${base()}/grp/app/users`;
  beforeAll(async () => {
    expect((await req('POST', `${base()}/grp`, { RepositoryName: 'app' })).statusCode).toBe(200);
  });

  it('a create with Groups null and Tags null creates what a create without them does', async () => {
    const plain = await req('POST', users(), { UserName: 'plain' });
    const go = await req('POST', users(), { UserName: 'gostyle', Groups: null, Tags: null });
    expect(go.statusCode).toBe(200);
    const rename = (tags: { Key: string; Value: string }[]) => tags.map((t) => (t.Key === 'Name' ? { ...t, Value: '-' } : t));
    expect({ ...go.json(), UserName: '-', Tags: rename(go.json().Tags) }).toEqual({
      ...plain.json(),
      UserName: '-',
      Tags: rename(plain.json().Tags),
    });
    expect((await iam.send(new GetUserCommand({ UserName: 'app-gostyle' }))).User?.Path).toBe('/spinup/spindev/grp/app/');
    expect((await iam.send(new ListGroupsForUserCommand({ UserName: 'app-gostyle' }))).Groups!.map((g) => g.GroupName)).toEqual([
      'SpinupECRAdminGroup-spindev',
    ]);
    expect((await iam.send(new ListUserTagsCommand({ UserName: 'app-gostyle' }))).Tags).toHaveLength(4);
  });

  it('an update with ResetKey null and Tags null issues no key and changes no tag', async () => {
    const tags = (await iam.send(new ListUserTagsCommand({ UserName: 'app-gostyle' }))).Tags;
    proxy.clear();
    const res = await req('PUT', `${users()}/gostyle`, { ResetKey: null, Tags: null });
    expect(res.statusCode).toBe(200);
    expect(res.json().AccessKey).toBeUndefined();
    expect(writes()).toEqual([]);
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'app-gostyle' }))).AccessKeyMetadata).toEqual([]);
    expect((await iam.send(new ListUserTagsCommand({ UserName: 'app-gostyle' }))).Tags).toEqual(tags);
  });

  it.each([
    ['POST', '', { UserName: 'bad', Groups: 'SpinupECRAdminGroup' }, 'body.Groups', 'must be array'],
    ['POST', '', { UserName: null }, 'body.UserName', 'must be string'],
    ['PUT', '/gostyle', { ResetKey: 'yes' }, 'body.ResetKey', 'must be boolean'],
    ['PUT', '/gostyle', { Tags: 'team=a' }, 'body.Tags', 'must be array'],
  ])('%s .../users%s %j is still a 400 naming the field, and changes nothing', async (method, path, body, field, message) => {
    proxy.clear();
    const res = await req(method, `${users()}${path}`, body);
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([{ field, message }]);
    expect(proxy.operations).toEqual([]);
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'app-gostyle' }))).AccessKeyMetadata).toEqual([]);
  });
});
