import { CreateRepositoryCommand, DescribeRepositoriesCommand, type ECRClient } from '@aws-sdk/client-ecr';
import {
  AddUserToGroupCommand,
  CreateAccessKeyCommand,
  CreateGroupCommand,
  CreatePolicyCommand,
  CreatePolicyVersionCommand,
  CreateUserCommand,
  DeleteAccessKeyCommand,
  GetGroupCommand,
  GetPolicyCommand,
  GetPolicyVersionCommand,
  GetUserCommand,
  ListAccessKeysCommand,
  ListAttachedGroupPoliciesCommand,
  ListGroupsForUserCommand,
  ListPolicyVersionsCommand,
  ListUserTagsCommand,
  type IAMClient,
} from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminPolicyDocument, canonicalJson } from '../../src/aws/user-access.js';
import { auth, directEcr, motoEndpoint, newAccount, testApp } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';
import { ORIGINAL_USER_ACTIONS } from '../support/original-policy.js';
import { FaultProxy } from '../support/fault-proxy.js';

const ORG = 'spindev';
let app: App;
let proxy: FaultProxy;
let account: string;
let iam: IAMClient;
let ecr: ECRClient;

const base = (group = 'grp', name = 'app') => `/v1/ecr/${account}/repositories/${group}/${name}/users`;
const req = (method: string, url: string, payload?: Record<string, unknown>) =>
  app.inject({ method: method as 'GET', url, headers: auth, ...(payload === undefined ? {} : { payload }) });
const policyArn = () => `arn:aws:iam::${account}:policy/spinup/${ORG}/SpinupECRAdminPolicy-${ORG}`;
const noSuchUser = (name: string) =>
  expect(iam.send(new GetUserCommand({ UserName: name }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });
const byKey = (a: { Key: string }, b: { Key: string }) => (a.Key < b.Key ? -1 : a.Key > b.Key ? 1 : 0);
const groupMembers = async () =>
  ((await iam.send(new GetGroupCommand({ GroupName: `SpinupECRAdminGroup-${ORG}` }))).Users ?? []).map((u) => u.UserName);

async function createRepository(group: string, name: string) {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/ecr/${account}/repositories/${group}`,
    headers: auth,
    payload: { RepositoryName: name },
  });
  expect(res.statusCode).toBe(200);
}

/** In a fresh account: the org's repository grp/app made directly in ECR, then its user `ci` through the API. */
async function userOnNewRepository(acct: string, ecr2: ECRClient) {
  await ecr2.send(
    new CreateRepositoryCommand({
      repositoryName: 'grp/app',
      tags: [
        { Key: 'Name', Value: 'grp/app' },
        { Key: 'spinup:org', Value: ORG },
        { Key: 'spinup:spaceid', Value: 'grp' },
      ],
    }),
  );
  return app.inject({ method: 'POST', url: `/v1/ecr/${acct}/repositories/grp/app/users`, headers: auth, payload: { UserName: 'ci' } });
}

beforeAll(async () => {
  proxy = await new FaultProxy(motoEndpoint()).start();
  // A user in no group is completed at once, not only once its create can no longer be under way
  // (test/routes/user-create-race.test.ts tests that wait).
  app = await testApp({ org: ORG, aws: { endpoint: proxy.endpoint, maxAttempts: 1, creatingMs: 0 } });
  account = newAccount();
  iam = await directIam(account);
  ecr = await directEcr(account);
  await createRepository('grp', 'app');
  await createRepository('grp', 'app2');
  await createRepository('other', 'app');
});
afterAll(async () => {
  await app?.close();
  await proxy?.stop();
});

describe('POST .../users', () => {
  it('creates the IAM user {name}-{user} at the repository path, tagged for the shared policy, in the org group', async () => {
    const res = await req('POST', base(), {
      UserName: 'ci',
      Groups: ['SpinupECRAdminGroup'],
      Tags: [
        { Key: 'team', Value: 'a' },
        { Key: 'ResourceName', Value: 'grp/evil' },
      ],
    });
    expect(res.statusCode).toBe(200);
    const expectedTags = [
      { Key: 'team', Value: 'a' },
      { Key: 'Name', Value: 'app-ci' },
      { Key: 'ResourceName', Value: 'grp/app' },
      { Key: 'spinup:org', Value: ORG },
      { Key: 'spinup:spaceid', Value: 'grp' },
    ];
    expect(res.json()).toEqual({ UserName: 'ci', AccessKeys: [], Groups: ['SpinupECRAdminGroup'], Tags: expectedTags });

    // What IAM holds, read with a separate client.
    const user = (await iam.send(new GetUserCommand({ UserName: 'app-ci' }))).User!;
    expect(user.Path).toBe(`/spinup/${ORG}/grp/app/`);
    const tags = (await iam.send(new ListUserTagsCommand({ UserName: 'app-ci' }))).Tags;
    expect(tags).toEqual(expect.arrayContaining(expectedTags));
    expect(tags).toHaveLength(5);
    expect((await iam.send(new ListGroupsForUserCommand({ UserName: 'app-ci' }))).Groups!.map((g) => g.GroupName)).toEqual([
      `SpinupECRAdminGroup-${ORG}`,
    ]);
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'app-ci' }))).AccessKeyMetadata).toEqual([]);

    // The shared policy: push and pull where the repository's tags equal the user's, and docker login.
    const group = (await iam.send(new GetGroupCommand({ GroupName: `SpinupECRAdminGroup-${ORG}` }))).Group!;
    expect(group.Path).toBe(`/spinup/${ORG}/`);
    const attached = (await iam.send(new ListAttachedGroupPoliciesCommand({ GroupName: group.GroupName }))).AttachedPolicies;
    expect(attached?.map((p) => p.PolicyArn)).toEqual([policyArn()]);
    const policy = (await iam.send(new GetPolicyCommand({ PolicyArn: policyArn() }))).Policy!;
    const version = (await iam.send(new GetPolicyVersionCommand({ PolicyArn: policyArn(), VersionId: policy.DefaultVersionId })))
      .PolicyVersion!;
    const document = JSON.parse(decodeURIComponent(version.Document!)) as { Statement: Record<string, unknown>[] };
    expect(document.Statement[0]).toMatchObject({
      Effect: 'Allow',
      Resource: '*',
      Condition: {
        StringEquals: {
          'aws:ResourceTag/Name': '${aws:PrincipalTag/ResourceName}',
          'aws:ResourceTag/spinup:org': '${aws:PrincipalTag/spinup:org}',
          'aws:ResourceTag/spinup:spaceid': '${aws:PrincipalTag/spinup:spaceid}',
        },
      },
    });
    expect(document.Statement[0]!.Action).toEqual(expect.arrayContaining(['ecr:PutImage', 'ecr:BatchGetImage', 'ecr:InitiateLayerUpload']));
    expect(document.Statement[1]).toEqual({
      Sid: 'AllowDockerLogin',
      Effect: 'Allow',
      Action: ['ecr:GetAuthorizationToken'],
      Resource: '*',
    });
  });

  it('a second user reuses the policy and group without a new policy version', async () => {
    const res = await req('POST', base(), { UserName: 'deploy' });
    expect(res.statusCode).toBe(200);
    expect((await iam.send(new ListPolicyVersionsCommand({ PolicyArn: policyArn() }))).Versions).toHaveLength(1);
    expect(await groupMembers()).toEqual(expect.arrayContaining(['app-ci', 'app-deploy']));
  });

  it('answers 409 for a user that exists, and leaves it as it was', async () => {
    const res = await req('POST', base(), { UserName: 'ci', Tags: [{ Key: 'team', Value: 'b' }] });
    expect(res.statusCode).toBe(409);
    expect(res.json().detail).toBe(
      `The user ci of grp/app already exists (IAM user app-ci): GET /v1/ecr/${account}/repositories/grp/app/users/ci shows it, PUT with ResetKey issues its access key.`,
    );
    expect((await iam.send(new ListUserTagsCommand({ UserName: 'app-ci' }))).Tags).toContainEqual({ Key: 'team', Value: 'a' });
  });

  it.each([
    ['no UserName', {}, 'body.UserName'],
    ['a UserName with a slash', { UserName: 'a/b' }, 'body.UserName'],
    ['another group', { UserName: 'x', Groups: ['Admins'] }, 'body.Groups.0'],
    [
      "47 tags (4 are the service's)",
      { UserName: 'x', Tags: Array.from({ length: 47 }, (_, i) => ({ Key: `k${i}`, Value: 'v' })) },
      'body.Tags',
    ],
  ])('answers 400 for %s, creating nothing', async (_what, body, field) => {
    proxy.clear();
    const res = await req('POST', base(), body);
    expect(res.statusCode).toBe(400);
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(proxy.operations.filter((o) => o.startsWith('Create'))).toEqual([]);
    await noSuchUser('app-x');
  });

  it('answers 400 when {name}-{user} is longer than IAM allows, naming where the user came from', async () => {
    const long = 'u'.repeat(61);
    const message = 'makes the IAM user name "{name}-{user}" longer than 64 characters';
    proxy.clear();
    const res = await req('POST', base(), { UserName: long });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([{ field: 'body.UserName', message }]);
    for (const [method, payload] of [['GET'], ['PUT', { ResetKey: true }], ['DELETE']] as const) {
      const other = await req(method, `${base()}/${long}`, payload);
      expect(other.statusCode, method).toBe(400);
      expect(other.json().errors).toEqual([{ field: 'params.user', message }]);
    }
    expect(proxy.operations.filter((o) => o.startsWith('Create') || o.startsWith('Delete'))).toEqual([]);
  });

  it('deletes the user again when it cannot be added to the group, and says so', async () => {
    proxy.fail('AddUserToGroup', { code: 'ServiceFailure', status: 500, message: 'IAM is down' });
    const res = await req('POST', base(), { UserName: 'half' });
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(
      /Could not add app-half to the group .*nothing was changed \(rolled back: create the IAM user app-half\)/,
    );
    await noSuchUser('app-half');
  });
});

describe('a POST retried after a create that failed part-way (STILL APPLIED: the user without its group)', () => {
  beforeAll(() => createRepository('grp', 'left'));
  const groupsOf = async (UserName: string) =>
    ((await iam.send(new ListGroupsForUserCommand({ UserName }))).Groups ?? []).map((g) => g.GroupName);
  const tagsOf = async (UserName: string) => (await iam.send(new ListUserTagsCommand({ UserName }))).Tags ?? [];
  const serviceTags = (group: string, name: string, user: string, org = ORG) => [
    { Key: 'Name', Value: `${name}-${user}` },
    { Key: 'ResourceName', Value: `${group}/${name}` },
    { Key: 'spinup:org', Value: org },
    { Key: 'spinup:spaceid', Value: group },
  ];
  /** An IAM user made straight in moto, as a create cut short after CreateUser leaves it (or not). */
  const leftover = (UserName: string, Path: string, Tags: { Key: string; Value: string }[]) =>
    iam.send(new CreateUserCommand({ UserName, Path, Tags }));

  it('completes the user the failed create left outside its group, and the user can then reach its repository', async () => {
    // The partial state for real: AddUserToGroup fails, then so does the rollback's DeleteUser.
    proxy.fail('AddUserToGroup', { code: 'ServiceFailure', status: 500, message: 'IAM is down' });
    proxy.fail('DeleteUser', { code: 'ServiceFailure', status: 500, message: 'IAM is down' });
    const body = { UserName: 'half2', Tags: [{ Key: 'team', Value: 'a' }] };
    const first = await req('POST', base('grp', 'left'), body);
    proxy.clear();
    expect(first.statusCode).toBe(502);
    expect(first.json().detail).toMatch(
      /STILL APPLIED: create the IAM user left-half2 \(rolling it back failed: ServiceFailureException\)\.$/,
    );
    expect(await groupsOf('left-half2')).toEqual([]);

    // The client does what it was told: it retries the same POST. (Before: 409, and the user stayed outside the group.)
    const retried = await req('POST', base('grp', 'left'), body);
    expect(retried.statusCode).toBe(200);
    const tags = [{ Key: 'team', Value: 'a' }, ...serviceTags('grp', 'left', 'half2')];
    expect({ ...retried.json(), Tags: [...retried.json().Tags].sort(byKey) }).toEqual({
      UserName: 'half2',
      AccessKeys: [],
      Groups: ['SpinupECRAdminGroup'],
      Tags: [...tags].sort(byKey),
    });
    // What IAM holds, read with a separate client: in the org's group, tags as asked, nothing recreated.
    expect(await groupsOf('left-half2')).toEqual([`SpinupECRAdminGroup-${ORG}`]);
    expect(await tagsOf('left-half2')).toEqual(expect.arrayContaining(tags));
    expect(await tagsOf('left-half2')).toHaveLength(5);
    expect((await iam.send(new GetUserCommand({ UserName: 'left-half2' }))).User!.Path).toBe(`/spinup/${ORG}/grp/left/`);
    expect(proxy.operations.filter((o) => /User|Group$/.test(o) && !o.startsWith('Get') && !o.startsWith('List'))).toEqual([
      'CreateUser',
      'AddUserToGroup',
    ]);
    expect((await req('GET', `${base('grp', 'left')}/half2`)).json().Groups).toEqual(['SpinupECRAdminGroup']);
  });

  it("completes such a user left by an earlier process or the original service, merging the request's tags", async () => {
    await leftover('left-crashed', `/spinup/${ORG}/grp/left/`, [{ Key: 'team', Value: 'a' }, ...serviceTags('grp', 'left', 'crashed')]);
    const res = await req('POST', base('grp', 'left'), { UserName: 'crashed', Tags: [{ Key: 'team', Value: 'b' }] });
    expect(res.statusCode).toBe(200);
    expect([...res.json().Tags].sort(byKey)).toEqual([...serviceTags('grp', 'left', 'crashed'), { Key: 'team', Value: 'b' }].sort(byKey));
    expect(await groupsOf('left-crashed')).toEqual([`SpinupECRAdminGroup-${ORG}`]);
    expect(await tagsOf('left-crashed')).toContainEqual({ Key: 'team', Value: 'b' });
  });

  it('rolls its own completion back, and keeps the user, when AddUserToGroup fails again', async () => {
    await leftover('left-again', `/spinup/${ORG}/grp/left/`, serviceTags('grp', 'left', 'again'));
    proxy.fail('AddUserToGroup', { code: 'LimitExceeded', status: 409, message: 'too many' });
    const res = await req('POST', base('grp', 'left'), { UserName: 'again', Tags: [{ Key: 'team', Value: 'c' }] });
    proxy.clear();
    expect(res.statusCode).toBe(429);
    expect(res.json().detail).toMatch(
      /Could not add left-again to the group .*; nothing was changed \(rolled back: merge the tags of left-again\)\.$/,
    );
    expect(await tagsOf('left-again')).toEqual(expect.arrayContaining(serviceTags('grp', 'left', 'again')));
    expect(await tagsOf('left-again')).toHaveLength(4);
    expect(await groupsOf('left-again')).toEqual([]);
  });

  it.each([
    [
      "another repository's user of that name",
      'left-x1',
      `/spinup/${ORG}/other/left/`,
      serviceTags('other', 'left', 'x1'),
      [],
      /not as a user of grp\/left.*choose another UserName/,
    ],
    [
      "another org's user at that path",
      'left-x2',
      `/spinup/${ORG}/grp/left/`,
      serviceTags('grp', 'left', 'x2', 'orgb'),
      [],
      /without the tags this service gives its users.*DELETE .*\/users\/x2/,
    ],
    [
      'a user at that path without ResourceName',
      'left-x3',
      `/spinup/${ORG}/grp/left/`,
      serviceTags('grp', 'left', 'x3').filter((t) => t.Key !== 'ResourceName'),
      [],
      /without the tags/,
    ],
    ['a user of that name outside the spinup paths', 'left-x4', '/', serviceTags('grp', 'left', 'x4'), [], /not as a user of grp\/left/],
    [
      "the repository's user in another group",
      'left-x5',
      `/spinup/${ORG}/grp/left/`,
      serviceTags('grp', 'left', 'x5'),
      ['Admins'],
      /in other groups \(Admins\)/,
    ],
  ])('never adopts %s: 409 saying what to do, and the user untouched', async (_what, UserName, Path, Tags, groups, detail) => {
    await leftover(UserName, Path, Tags);
    for (const GroupName of groups) {
      await iam.send(new CreateGroupCommand({ GroupName })).catch(() => undefined);
      await iam.send(new AddUserToGroupCommand({ UserName, GroupName }));
    }
    proxy.clear();
    const res = await req('POST', base('grp', 'left'), { UserName: UserName.slice('left-'.length), Tags: [{ Key: 'team', Value: 'z' }] });
    expect(res.statusCode).toBe(409);
    expect(res.json().detail).toMatch(detail);
    expect(await groupsOf(UserName)).toEqual(groups);
    expect(await tagsOf(UserName)).toEqual(expect.arrayContaining(Tags));
    expect(await tagsOf(UserName)).toHaveLength(Tags.length);
    expect(proxy.operations.filter((o) => /^(Add|Remove|Tag|Untag|Delete)/.test(o))).toEqual([]);
  });
});

describe('GET .../users and .../users/{user}', () => {
  it('lists the users of the repository only, by short name', async () => {
    // A user of "app2" shares the path prefix without the trailing slash.
    expect((await req('POST', base('grp', 'app2'), { UserName: 'ci' })).statusCode).toBe(200);
    const res = await req('GET', base());
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(['ci', 'deploy']);
    expect((await req('GET', base('grp', 'app2'))).json()).toEqual(['ci']);
  });

  it('shows a user with its keys (no secret), groups and tags', async () => {
    const key = (await iam.send(new CreateAccessKeyCommand({ UserName: 'app-deploy' }))).AccessKey!;
    const res = await req('GET', `${base()}/deploy`);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(Object.keys(body)).toEqual(['UserName', 'AccessKeys', 'Groups', 'Tags']);
    expect(body.UserName).toBe('deploy');
    expect(body.AccessKeys).toEqual([
      { AccessKeyId: key.AccessKeyId, CreateDate: expect.stringMatching(/Z$/), Status: 'Active', UserName: 'app-deploy' },
    ]);
    expect(JSON.stringify(body)).not.toContain(key.SecretAccessKey);
    expect(body.Groups).toEqual(['SpinupECRAdminGroup']);
    expect(body.Tags).toContainEqual({ Key: 'ResourceName', Value: 'grp/app' });
  });

  it('answers 404 for a missing user and for an IAM user of that name outside the repository path', async () => {
    await iam.send(new CreateUserCommand({ UserName: 'app-stranger', Path: '/someone/else/' }));
    for (const user of ['nobody', 'stranger']) {
      for (const method of ['GET', 'DELETE']) {
        const res = await req(method, `${base()}/${user}`);
        expect(res.statusCode, `${method} ${user}`).toBe(404);
        expect(res.json().detail).toBe(`User ${user} of repository grp/app not found.`);
      }
      expect((await req('PUT', `${base()}/${user}`, { ResetKey: true })).statusCode).toBe(404);
    }
    expect((await iam.send(new GetUserCommand({ UserName: 'app-stranger' }))).User?.Path).toBe('/someone/else/');
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'app-stranger' }))).AccessKeyMetadata).toEqual([]);
  });
});

describe('PUT .../users/{user}', () => {
  it('ResetKey issues a new key, answers its secret once, and deletes every old key (two: the newer first)', async () => {
    const k1 = (await iam.send(new CreateAccessKeyCommand({ UserName: 'app-ci' }))).AccessKey!.AccessKeyId!;
    const k2 = (await iam.send(new CreateAccessKeyCommand({ UserName: 'app-ci' }))).AccessKey!.AccessKeyId!;
    const res = await req('PUT', `${base()}/ci`, { ResetKey: true });
    expect(res.statusCode).toBe(200);
    // The README's order, on the wire: UserName, AccessKey, DeletedAccessKeys, Tags (was Tags second).
    expect(res.body).toMatch(
      /^\{"UserName":"ci","AccessKey":\{"AccessKeyId":"[^"]+","CreateDate":"[^"]+","SecretAccessKey":"[^"]+","Status":"Active","UserName":"app-ci"\},"DeletedAccessKeys":\["[^\]]+\],"Tags":\[\{"Key":[^\]]+\]\}$/,
    );
    const body = res.json();
    expect(body.UserName).toBe('ci');
    expect(body.AccessKey).toMatchObject({
      AccessKeyId: expect.any(String),
      SecretAccessKey: expect.any(String),
      Status: 'Active',
      UserName: 'app-ci',
    });
    // The newer to make room, the older once the new key exists.
    expect(body.DeletedAccessKeys).toEqual([k2, k1]);
    const keys = (await iam.send(new ListAccessKeysCommand({ UserName: 'app-ci' }))).AccessKeyMetadata!.map((k) => k.AccessKeyId);
    expect(keys).toEqual([body.AccessKey.AccessKeyId]);

    const again = (await req('PUT', `${base()}/ci`, { ResetKey: true })).json();
    expect(again.DeletedAccessKeys).toEqual([body.AccessKey.AccessKeyId]);
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'app-ci' }))).AccessKeyMetadata!.map((k) => k.AccessKeyId)).toEqual([
      again.AccessKey.AccessKeyId,
    ]);
  });

  it('merges tags; the service tags cannot be changed', async () => {
    const res = await req('PUT', `${base()}/ci`, {
      Tags: [
        { Key: 'team', Value: 'b' },
        { Key: 'cost', Value: '1' },
        { Key: 'ResourceName', Value: 'grp/app2' },
        { Key: 'spinup:spaceid', Value: 'other' },
      ],
    });
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/^\{"UserName":"ci","Tags":\[\{"Key":[^\]]+\]\}$/);
    expect(res.json().AccessKey).toBeUndefined();
    const tags = (await iam.send(new ListUserTagsCommand({ UserName: 'app-ci' }))).Tags!;
    expect(tags).toEqual(
      expect.arrayContaining([
        { Key: 'team', Value: 'b' },
        { Key: 'cost', Value: '1' },
        { Key: 'ResourceName', Value: 'grp/app' },
        { Key: 'spinup:spaceid', Value: 'grp' },
      ]),
    );
    expect(tags).toHaveLength(6);
    expect(res.json().Tags).toEqual(expect.arrayContaining(tags));
  });

  it('ignores the service tags in any case, and merges a key given in another case into its tag (IAM keys are case-insensitive)', async () => {
    const before = (await iam.send(new ListUserTagsCommand({ UserName: 'app-ci' }))).Tags!;
    expect(before).toContainEqual({ Key: 'team', Value: 'b' });
    const res = await req('PUT', `${base()}/ci`, {
      Tags: [
        { Key: 'resourcename', Value: 'grp/app2' },
        { Key: 'SPINUP:SPACEID', Value: 'other' },
        { Key: 'TEAM', Value: 'c' },
      ],
    });
    expect(res.statusCode).toBe(200);
    const tags = (await iam.send(new ListUserTagsCommand({ UserName: 'app-ci' }))).Tags!;
    expect(tags).toEqual(before.map((t) => (t.Key === 'team' ? { Key: 'team', Value: 'c' } : t)));
    expect(res.json().Tags).toEqual(expect.arrayContaining(tags));
    expect(res.json().Tags).toHaveLength(tags.length);

    const created = await req('POST', base(), {
      UserName: 'cased',
      Tags: [
        { Key: 'name', Value: 'spoofed' },
        { Key: 'Resourcename', Value: 'grp/app2' },
        { Key: 'Env', Value: 'a' },
        { Key: 'env', Value: 'b' },
      ],
    });
    expect(created.statusCode).toBe(200);
    const createdTags = (await iam.send(new ListUserTagsCommand({ UserName: 'app-cased' }))).Tags!;
    expect(createdTags.map((t) => t.Key).sort()).toEqual(['Name', 'ResourceName', 'env', 'spinup:org', 'spinup:spaceid'].sort());
    expect(createdTags).toEqual(
      expect.arrayContaining([
        { Key: 'Name', Value: 'app-cased' },
        { Key: 'ResourceName', Value: 'grp/app' },
      ]),
    );
  });

  it('answers 400 naming a tag IAM would refuse (its characters, the aws: prefix), before any IAM call; its longest keys and values are accepted', async () => {
    proxy.clear();
    const cases = [
      ['POST', base(), { UserName: 'badtag', Tags: [{ Key: 'k!', Value: 'v' }] }, 'body.Tags.0.Key'],
      ['POST', base(), { UserName: 'badtag', Tags: [{ Key: 'ok', Value: 'a\nb' }] }, 'body.Tags.0.Value'],
      [
        'PUT',
        `${base()}/ci`,
        {
          ResetKey: true,
          Tags: [
            { Key: 'ok', Value: 'v' },
            { Key: 'a\u0000b', Value: 'v' },
          ],
        },
        'body.Tags.1.Key',
      ],
      ['PUT', `${base()}/ci`, { Tags: [{ Key: 'k', Value: 'x#y' }] }, 'body.Tags.0.Value'],
      // AWS reserves the prefix, in any case
      ['POST', base(), { UserName: 'badtag', Tags: [{ Key: 'aws:reserved', Value: 'v' }] }, 'body.Tags.0.Key'],
      ['PUT', `${base()}/ci`, { Tags: [{ Key: 'AWS:Reserved', Value: 'v' }] }, 'body.Tags.0.Key'],
    ] as const;
    for (const [method, url, payload, field] of cases) {
      const res = await req(method, url, payload);
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json().errors.map((e: { field: string }) => e.field)).toEqual([field]);
    }
    expect(proxy.operations.filter((o) => !['DescribeRepositories', 'ListTagsForResource'].includes(o))).toEqual([]);
    await noSuchUser('app-badtag');

    const longest = { Key: `Ü ${'k'.repeat(124)}:@`, Value: `${'é'.repeat(249)} _./=+-` };
    const res = await req('POST', base(), { UserName: 'longtags', Tags: [longest] });
    expect(res.statusCode).toBe(200);
    expect((await iam.send(new ListUserTagsCommand({ UserName: 'app-longtags' }))).Tags).toContainEqual(longest);
  });

  it("answers IAM's ValidationError (a parameter outside its constraints) as a 400, not a 502", async () => {
    proxy.fail('TagUser', { code: 'ValidationError', status: 400, message: '1 validation error detected', times: 1 });
    const res = await req('PUT', `${base()}/ci`, { Tags: [{ Key: 'fine', Value: 'v' }] });
    proxy.clear();
    expect(res.statusCode).toBe(400);
    expect(res.json().detail).toMatch(/AWS rejected the request/);
  });

  it('a tag merge past 50 tags is a 400 before IAM is called', async () => {
    proxy.clear();
    const res = await req('PUT', `${base()}/ci`, { Tags: Array.from({ length: 45 }, (_, i) => ({ Key: `n${i}`, Value: 'v' })) });
    expect(res.statusCode).toBe(400);
    expect(proxy.operations.filter((o) => o === 'TagUser')).toEqual([]);
  });

  it('rolls the tags and the new key back when the old key cannot be deleted, and says so', async () => {
    const before = (await iam.send(new ListAccessKeysCommand({ UserName: 'app-ci' }))).AccessKeyMetadata!.map((k) => k.AccessKeyId);
    const tagsBefore = (await iam.send(new ListUserTagsCommand({ UserName: 'app-ci' }))).Tags;
    proxy.fail('DeleteAccessKey', { code: 'ServiceFailure', status: 500, times: 1 });
    const res = await req('PUT', `${base()}/ci`, {
      ResetKey: true,
      Tags: [
        { Key: 'team', Value: 'c' },
        { Key: 'fresh', Value: 'x' },
      ],
    });
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(/nothing was changed \(rolled back: create a new access key for app-ci; merge the tags of app-ci\)/);
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'app-ci' }))).AccessKeyMetadata!.map((k) => k.AccessKeyId)).toEqual(
      before,
    );
    expect((await iam.send(new ListUserTagsCommand({ UserName: 'app-ci' }))).Tags).toEqual(expect.arrayContaining(tagsBefore!));
    expect((await iam.send(new ListUserTagsCommand({ UserName: 'app-ci' }))).Tags).toHaveLength(tagsBefore!.length);
  });
});

describe('DELETE', () => {
  it('DELETE .../users/{user} removes group memberships, keys and the user', async () => {
    const keys = (await iam.send(new ListAccessKeysCommand({ UserName: 'app-deploy' }))).AccessKeyMetadata!.map((k) => k.AccessKeyId);
    expect(keys).toHaveLength(1);
    proxy.clear();
    const res = await req('DELETE', `${base()}/deploy`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ UserName: 'deploy', DeletedAccessKeys: keys, RemovedFromGroups: [`SpinupECRAdminGroup-${ORG}`] });
    await noSuchUser('app-deploy');
    expect(await groupMembers()).not.toContain('app-deploy');
    // moto deletes a user's keys with it, so the calls show that the keys were deleted first.
    expect(proxy.operations.filter((o) => ['RemoveUserFromGroup', 'DeleteAccessKey', 'DeleteUser'].includes(o))).toEqual([
      'RemoveUserFromGroup',
      'DeleteAccessKey',
      'DeleteUser',
    ]);
  });

  it('deleting a repository deletes its users first, and only its users', async () => {
    await createRepository('grp', 'gone');
    for (const user of ['a', 'b']) expect((await req('POST', base('grp', 'gone'), { UserName: user })).statusCode).toBe(200);
    await iam.send(new CreateAccessKeyCommand({ UserName: 'gone-a' }));
    proxy.clear();
    const res = await req('DELETE', `/v1/ecr/${account}/repositories/grp/gone`);
    expect(res.statusCode).toBe(200);
    expect(proxy.operations.filter((o) => o === 'DeleteUser' || o === 'DeleteRepository')).toEqual([
      'DeleteUser',
      'DeleteUser',
      'DeleteRepository',
    ]);
    expect(res.json().Users).toEqual(['a', 'b']);
    await noSuchUser('gone-a');
    await noSuchUser('gone-b');
    expect(await groupMembers()).toEqual(expect.arrayContaining(['app-ci', 'app2-ci']));
    await expect(ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['grp/gone'] }))).rejects.toThrow(/does not exist/);
  });

  it('keeps the repository when one of its users cannot be deleted, and names the users already deleted', async () => {
    await createRepository('grp', 'stays');
    for (const user of ['a', 'b']) expect((await req('POST', base('grp', 'stays'), { UserName: user })).statusCode).toBe(200);
    proxy.fail('DeleteUser', { code: 'ServiceFailure', status: 500, times: 2 });
    const res = await req('DELETE', `/v1/ecr/${account}/repositories/grp/stays`);
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(/Could not delete the user stays-a of grp\/stays, so the repository was not deleted/);
    expect(res.json().detail).toMatch(/STILL APPLIED: remove stays-a from the group/);
    expect((await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['grp/stays'] }))).repositories).toHaveLength(1);
    // Retried, it finishes the job.
    const again = await req('DELETE', `/v1/ecr/${account}/repositories/grp/stays`);
    expect(again.statusCode).toBe(200);
    expect(again.json().Users).toEqual(['a', 'b']);
  });

  it('deletes the repository when a user key it is deleting is already gone (replaced by a ResetKey on another replica)', async () => {
    await createRepository('grp', 'raced');
    expect((await req('POST', base('grp', 'raced'), { UserName: 'ci' })).statusCode).toBe(200);
    expect((await req('PUT', `${base('grp', 'raced')}/ci`, { ResetKey: true })).statusCode).toBe(200);
    const [key] = (await iam.send(new ListAccessKeysCommand({ UserName: 'raced-ci' }))).AccessKeyMetadata ?? [];
    // The service has listed the key; it is deleted elsewhere before the service's own delete reaches IAM.
    let release!: () => void;
    proxy.fail('DeleteAccessKey', { code: 'NoSuchEntity', status: 404, times: 1, until: new Promise<void>((r) => (release = r)) });
    const deleting = req('DELETE', `/v1/ecr/${account}/repositories/grp/raced`);
    while (proxy.count('DeleteAccessKey') === 0) await new Promise((r) => setTimeout(r, 10));
    await iam.send(new DeleteAccessKeyCommand({ UserName: 'raced-ci', AccessKeyId: key!.AccessKeyId }));
    release();
    const res = await deleting;
    proxy.clear();
    // before: 404 "Not found", the repository and its user left in place
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().Users).toEqual(['ci']);
    await noSuchUser('raced-ci');
    await expect(ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['grp/raced'] }))).rejects.toMatchObject({
      name: 'RepositoryNotFoundException',
    });
  });

  it('deletes a repository after a ResetKey of its user under way on this replica, not in the middle of it', async () => {
    await createRepository('grp', 'resetting');
    expect((await req('POST', base('grp', 'resetting'), { UserName: 'ci' })).statusCode).toBe(200);
    expect((await req('PUT', `${base('grp', 'resetting')}/ci`, { ResetKey: true })).statusCode).toBe(200);
    proxy.delay('CreateAccessKey', 400);
    const reset = req('PUT', `${base('grp', 'resetting')}/ci`, { ResetKey: true });
    await new Promise((r) => setTimeout(r, 100));
    const deleted = req('DELETE', `/v1/ecr/${account}/repositories/grp/resetting`);
    const [resetRes, deleteRes] = await Promise.all([reset, deleted]);
    proxy.clear();
    // before: the delete removed the user under the reset, whose new key then failed
    expect(resetRes.statusCode, resetRes.body).toBe(200);
    expect(deleteRes.statusCode, deleteRes.body).toBe(200);
    await noSuchUser('resetting-ci');
  });
});

describe('a retry after a DELETE or ResetKey that failed part-way (STILL APPLIED) finishes it', () => {
  beforeAll(() => createRepository('grp', 'retry'));
  const keysOf = async (UserName: string) =>
    ((await iam.send(new ListAccessKeysCommand({ UserName }))).AccessKeyMetadata ?? []).map((k) => k.AccessKeyId);

  it('DELETE .../users/{user}: the retried DELETE deletes what is left', async () => {
    expect((await req('POST', base('grp', 'retry'), { UserName: 'del' })).statusCode).toBe(200);
    expect((await req('PUT', `${base('grp', 'retry')}/del`, { ResetKey: true })).statusCode).toBe(200);
    // DeleteUser fails, and so does reading it back (the first GetUser is the route's own).
    proxy.fail('DeleteUser', { code: 'ServiceFailure', status: 500, times: 1 });
    proxy.fail('GetUser', { code: 'ServiceFailure', status: 500, skip: 1, times: 1 });
    const res = await req('DELETE', `${base('grp', 'retry')}/del`);
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(
      /STILL APPLIED: delete the access key \w+; remove retry-del from the group .*; perhaps: delete the IAM user retry-del\.$/,
    );
    expect(await keysOf('retry-del')).toEqual([]);

    const retried = await req('DELETE', `${base('grp', 'retry')}/del`);
    expect(retried.statusCode).toBe(200);
    expect(retried.json()).toEqual({ UserName: 'del', DeletedAccessKeys: [], RemovedFromGroups: [] });
    await noSuchUser('retry-del');
  });

  it('PUT ResetKey: the retried reset issues the key and deletes the old ones', async () => {
    expect((await req('POST', base('grp', 'retry'), { UserName: 'key' })).statusCode).toBe(200);
    const [oldest, newer] = [
      (await iam.send(new CreateAccessKeyCommand({ UserName: 'retry-key' }))).AccessKey!.AccessKeyId!,
      (await iam.send(new CreateAccessKeyCommand({ UserName: 'retry-key' }))).AccessKey!.AccessKeyId!,
    ];
    // Two keys: the newer is deleted to make room, then CreateAccessKey fails (deleting a key
    // cannot be undone). The older stays: after a reset that failed once its key was made (the
    // newer, whose secret was never returned), it is the key the client still holds. Before, the
    // older was deleted, and the user kept only the key whose secret nobody has.
    proxy.fail('CreateAccessKey', { code: 'ServiceFailure', status: 500, times: 1 });
    const res = await req('PUT', `${base('grp', 'retry')}/key`, { ResetKey: true });
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(new RegExp(`STILL APPLIED: delete the access key ${newer}\\.$`));
    expect(await keysOf('retry-key')).toEqual([oldest]);

    const retried = await req('PUT', `${base('grp', 'retry')}/key`, { ResetKey: true });
    expect(retried.statusCode).toBe(200);
    expect(retried.json().DeletedAccessKeys).toEqual([oldest]);
    expect(await keysOf('retry-key')).toEqual([retried.json().AccessKey.AccessKeyId]);
  });
});

describe('org and group isolation', () => {
  it("answers 404 to every user route of another org's or group's repository, and creates nothing", async () => {
    const otherOrg = await testApp({ org: 'orgb', aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
    try {
      const attempts: [App, string, string, Record<string, unknown>?][] = [
        [otherOrg, 'GET', base()],
        [otherOrg, 'POST', base(), { UserName: 'intruder' }],
        [otherOrg, 'GET', `${base()}/ci`],
        [otherOrg, 'PUT', `${base()}/ci`, { ResetKey: true }],
        [otherOrg, 'DELETE', `${base()}/ci`],
        // The same org, but the repository is filed under group "grp", not "elsewhere".
        [app, 'GET', `/v1/ecr/${account}/repositories/elsewhere/app/users`],
      ];
      proxy.clear();
      for (const [a, method, url, payload] of attempts) {
        const res = await a.inject({ method: method as 'GET', url, headers: auth, ...(payload ? { payload } : {}) });
        expect(res.statusCode, `${method} ${url}`).toBe(404);
        expect(res.json().detail).toMatch(/^Repository .* not found\.$/);
      }
      // Only ECR reads: IAM was never called.
      expect(proxy.operations.filter((o) => !['DescribeRepositories', 'ListTagsForResource', 'AssumeRole'].includes(o))).toEqual([]);
      await noSuchUser('app-intruder');
      expect((await iam.send(new ListAccessKeysCommand({ UserName: 'app-ci' }))).AccessKeyMetadata).toHaveLength(1);
    } finally {
      await otherOrg.close();
    }
  });
});

describe('the shared policy', () => {
  it("keeps what the original's document granted its users (but DeleteRegistryPolicy) when it replaces it", async () => {
    const acct = newAccount();
    const iam2 = await directIam(acct);
    const ecr2 = await directEcr(acct);
    const arn = `arn:aws:iam::${acct}:policy/spinup/${ORG}/SpinupECRAdminPolicy-${ORG}`;
    const original = {
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'AllowActionsOnRepositoriesInSpaceAndOrg',
          Effect: 'Allow',
          Action: ORIGINAL_USER_ACTIONS,
          Resource: '*',
          Condition: {
            StringEqualsIgnoreCase: {
              'aws:ResourceTag/Name': '${aws:PrincipalTag/ResourceName}',
              'aws:ResourceTag/spinup:org': '${aws:PrincipalTag/spinup:org}',
              'aws:ResourceTag/spinup:spaceid': '${aws:PrincipalTag/spinup:spaceid}',
            },
          },
        },
        { Sid: 'AllowDockerLogin', Effect: 'Allow', Action: ['ecr:GetAuthorizationToken'], Resource: '*' },
      ],
    };
    await iam2.send(
      new CreatePolicyCommand({
        PolicyName: `SpinupECRAdminPolicy-${ORG}`,
        Path: `/spinup/${ORG}/`,
        PolicyDocument: JSON.stringify(original),
      }),
    );
    const res = await userOnNewRepository(acct, ecr2);
    expect(res.statusCode).toBe(200);
    const current = (await iam2.send(new GetPolicyCommand({ PolicyArn: arn }))).Policy!.DefaultVersionId;
    expect(current).toBe('v2'); // StringEquals where the original had StringEqualsIgnoreCase: a new version
    const doc = JSON.parse(
      decodeURIComponent((await iam2.send(new GetPolicyVersionCommand({ PolicyArn: arn, VersionId: current }))).PolicyVersion!.Document!),
    ) as { Statement: { Action: string[] }[] };
    const granted = doc.Statement.flatMap((s) => s.Action);
    expect(ORIGINAL_USER_ACTIONS.filter((a) => !granted.includes(a))).toEqual(['ecr:DeleteRegistryPolicy']);
  });

  it('replaces an outdated document with a new default version, pruning the oldest so IAM keeps at most 5', async () => {
    const acct = newAccount();
    const iam2 = await directIam(acct);
    const ecr2 = await directEcr(acct);
    const arn = `arn:aws:iam::${acct}:policy/spinup/${ORG}/SpinupECRAdminPolicy-${ORG}`;
    const old = (n: number) =>
      JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: [`ecr:Old${n}`], Resource: '*' }] });
    await iam2.send(
      new CreatePolicyCommand({ PolicyName: `SpinupECRAdminPolicy-${ORG}`, Path: `/spinup/${ORG}/`, PolicyDocument: old(1) }),
    );
    for (const n of [2, 3, 4, 5])
      await iam2.send(new CreatePolicyVersionCommand({ PolicyArn: arn, PolicyDocument: old(n), SetAsDefault: n === 3 }));
    expect((await iam2.send(new ListPolicyVersionsCommand({ PolicyArn: arn }))).Versions).toHaveLength(5);
    const res = await userOnNewRepository(acct, ecr2);
    expect(res.statusCode).toBe(200);
    const versions = (await iam2.send(new ListPolicyVersionsCommand({ PolicyArn: arn }))).Versions!;
    expect(versions).toHaveLength(5);
    const ids = versions.map((v) => v.VersionId).sort();
    expect(ids).not.toContain('v1'); // the oldest non-default one went
    expect(ids).toContain('v3'); // the previous default stays
    const current = versions.find((v) => v.IsDefaultVersion)!;
    const doc = (await iam2.send(new GetPolicyVersionCommand({ PolicyArn: arn, VersionId: current.VersionId }))).PolicyVersion!.Document!;
    expect(canonicalJson(JSON.parse(decodeURIComponent(doc)))).toBe(canonicalJson(adminPolicyDocument()));
  });
});
