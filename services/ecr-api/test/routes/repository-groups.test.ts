import {
  CreateRepositoryCommand,
  DescribeRepositoriesCommand,
  GetRepositoryPolicyCommand,
  ListTagsForResourceCommand,
  PutImageCommand,
  type ECRClient,
} from '@aws-sdk/client-ecr';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, directEcr, manifest, motoEndpoint, newAccount, testApp } from '../support/app.js';
import { FaultProxy } from '../support/fault-proxy.js';

/** Groups (the pull policy), the 50-tag limit, and updates that fail half-way. */
const ORG = 'spindev';
let app: App;
let proxy: FaultProxy;
let account: string;
let ecr: ECRClient;

/** The original's policy text for groups foo, bar, baz (its policy_test.go), byte for byte. */
const ORIGINAL_POLICY =
  '{"Version":"2012-10-17","Statement":[{"Sid":"AllowPullImagesFromSpaceAndOrg","Effect":"Allow","Principal":{"AWS":["*"]},"Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:BatchGetImage"],"Condition":{"StringEqualsIgnoreCase":{"aws:PrincipalTag/spinup:org":["${aws:ResourceTag/spinup:org}"],"aws:PrincipalTag/spinup:spaceid":["${aws:ResourceTag/spinup:spaceid}","foo","bar","baz"]}}}]}';

const base = () => `/v1/ecr/${account}/repositories`;
const req = (method: string, url: string, payload?: Record<string, unknown>) =>
  app.inject({ method: method as 'GET', url, headers: auth, ...(payload === undefined ? {} : { payload }) });
const policyOf = async (name: string) => {
  try {
    return (await ecr.send(new GetRepositoryPolicyCommand({ repositoryName: name }))).policyText;
  } catch (err) {
    if ((err as Error).name === 'RepositoryPolicyNotFoundException') return undefined;
    throw err;
  }
};
const snapshot = async (name: string) => {
  const repo = (await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [name] }))).repositories![0]!;
  const tags = (await ecr.send(new ListTagsForResourceCommand({ resourceArn: repo.repositoryArn }))).tags!;
  return {
    scanOnPush: repo.imageScanningConfiguration?.scanOnPush,
    policy: await policyOf(name),
    tags: [...tags].sort((a, b) => (a.Key! < b.Key! ? -1 : 1)),
  };
};
const manyTags = (n: number, prefix = 'k') => Array.from({ length: n }, (_, i) => ({ Key: `${prefix}${i}`, Value: 'v' }));

beforeAll(async () => {
  proxy = await new FaultProxy(motoEndpoint()).start();
  // A repository without a policy is completed at once, not only once its create can no longer be
  // under way (test/routes/create-race.test.ts and rollback-deadline.test.ts test that wait).
  app = await testApp({ org: ORG, aws: { endpoint: proxy.endpoint, maxAttempts: 1, creatingMs: 0 } });
  account = newAccount();
  ecr = await directEcr(account);
});
afterAll(async () => {
  await app?.close();
  await proxy?.stop();
});

describe('Groups', () => {
  it("create sets the original's AllowPullImagesFromSpaceAndOrg policy, and show reads the groups back", async () => {
    const res = await req('POST', `${base()}/grp`, { RepositoryName: 'shared', Groups: ['foo', 'bar', 'baz'] });
    expect(res.statusCode).toBe(200);
    expect(res.json().Groups).toEqual(['foo', 'bar', 'baz']);
    expect(await policyOf('grp/shared')).toBe(ORIGINAL_POLICY);
    const show = await req('GET', `${base()}/grp/shared`);
    expect(show.json().Groups).toEqual(['foo', 'bar', 'baz']);
  });

  it('create without Groups lets the own group pull only', async () => {
    const res = await req('POST', `${base()}/grp`, { RepositoryName: 'alone' });
    expect(res.json().Groups).toEqual([]);
    const policy = JSON.parse((await policyOf('grp/alone'))!);
    expect(policy.Statement[0].Condition.StringEqualsIgnoreCase['aws:PrincipalTag/spinup:spaceid']).toEqual([
      '${aws:ResourceTag/spinup:spaceid}',
    ]);
    expect((await req('GET', `${base()}/grp/alone`)).json().Groups).toEqual([]);
  });

  it('update replaces the groups; [] resets to the own group; absent leaves them', async () => {
    expect((await req('PUT', `${base()}/grp/shared`, { Groups: ['qux'] })).json().Groups).toEqual(['qux']);
    expect(
      JSON.parse((await policyOf('grp/shared'))!).Statement[0].Condition.StringEqualsIgnoreCase['aws:PrincipalTag/spinup:spaceid'],
    ).toEqual(['${aws:ResourceTag/spinup:spaceid}', 'qux']);
    expect((await req('PUT', `${base()}/grp/shared`, { ScanOnPush: true })).json().Groups).toEqual(['qux']);
    expect((await req('PUT', `${base()}/grp/shared`, { Groups: [] })).json().Groups).toEqual([]);
    expect((await req('GET', `${base()}/grp/shared`)).json().Groups).toEqual([]);
  });

  it('a repository without a policy shows no groups', async () => {
    expect((await req('POST', `${base()}/grp`, { RepositoryName: 'nopolicy' })).statusCode).toBe(200);
    const { DeleteRepositoryPolicyCommand } = await import('@aws-sdk/client-ecr');
    await ecr.send(new DeleteRepositoryPolicyCommand({ repositoryName: 'grp/nopolicy' }));
    const res = await req('GET', `${base()}/grp/nopolicy`);
    expect(res.statusCode).toBe(200);
    expect(res.json().Groups).toEqual([]);
  });

  it('answers 400 for a group that is not a group name', async () => {
    expect((await req('POST', `${base()}/grp`, { RepositoryName: 'bad', Groups: ['Not A Group'] })).statusCode).toBe(400);
  });

  it("answers 400 naming Groups, before any AWS call, when the policy would be longer than ECR's 10,240 characters", async () => {
    const longest = (n: number) => Array.from({ length: n }, (_, i) => `${String(i).padStart(3, '0')}${'x'.repeat(251)}`);
    expect((await req('POST', `${base()}/grp`, { RepositoryName: 'fits', Groups: longest(38) })).statusCode).toBe(200);
    expect((await policyOf('grp/fits'))!.length).toBeLessThanOrEqual(10_240);
    const before = await snapshot('grp/fits');
    proxy.clear();
    for (const [method, url, payload] of [
      ['POST', `${base()}/grp`, { RepositoryName: 'toolong', Groups: longest(39) }],
      ['PUT', `${base()}/grp/fits`, { ScanOnPush: true, Groups: longest(39) }],
    ] as const) {
      const res = await req(method, url, payload);
      expect(res.statusCode, method).toBe(400);
      expect(res.json().errors.map((e: { field: string }) => e.field)).toEqual(['body.Groups']);
    }
    expect(proxy.operations).toEqual([]);
    expect(await snapshot('grp/fits')).toEqual(before);
    await expect(ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['grp/toolong'] }))).rejects.toThrow(/does not exist/);
  });

  it('deletes the new repository again when its policy cannot be set, and says so', async () => {
    proxy.fail('SetRepositoryPolicy', { code: 'ServerException', status: 500, times: 1 });
    const res = await req('POST', `${base()}/grp`, { RepositoryName: 'halfmade', Groups: ['foo'] });
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(
      /Could not set the repository policy of grp\/halfmade; nothing was changed \(rolled back: create the repository grp\/halfmade\)/,
    );
    await expect(ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['grp/halfmade'] }))).rejects.toThrow(/does not exist/);
  });
});

describe('a POST retried after a create that failed part-way (STILL APPLIED: the repository without its policy)', () => {
  const orgTags = (name: string, org = ORG) => [
    { Key: 'Name', Value: `grp/${name}` },
    { Key: 'spinup:org', Value: org },
    { Key: 'spinup:spaceid', Value: 'grp' },
  ];
  /** A repository made straight in moto, without a policy, as a create cut short after CreateRepository leaves it (or not). */
  const leftover = (name: string, opts: { org?: string; scanOnPush?: boolean } = {}) =>
    ecr.send(
      new CreateRepositoryCommand({
        repositoryName: `grp/${name}`,
        imageScanningConfiguration: { scanOnPush: opts.scanOnPush ?? false },
        tags: orgTags(name, opts.org),
      }),
    );

  it('sets the policy of the repository the failed create left without one, and answers it', async () => {
    // The partial state for real: SetRepositoryPolicy fails, then so does the rollback's DeleteRepository.
    proxy.fail('SetRepositoryPolicy', { code: 'ServerException', status: 500, times: 1 });
    proxy.fail('DeleteRepository', { code: 'ServerException', status: 500, times: 1 });
    const body = { RepositoryName: 'half', ScanOnPush: 'true', Groups: ['foo'], Tags: [{ Key: 'team', Value: 'a' }] };
    const first = await req('POST', `${base()}/grp`, body);
    proxy.clear();
    expect(first.statusCode).toBe(502);
    expect(first.json().detail).toMatch(/STILL APPLIED: create the repository grp\/half \(rolling it back failed: ServerException\)\.$/);
    expect(await policyOf('grp/half')).toBeUndefined();
    // GET cannot tell it from a repository whose own group only may pull.
    expect((await req('GET', `${base()}/grp/half`)).json().Groups).toEqual([]);

    // The client retries the same POST. (Before: 409, and the repository stayed without its policy.)
    const retried = await req('POST', `${base()}/grp`, body);
    expect(retried.statusCode).toBe(200);
    expect(retried.json()).toMatchObject({ RepositoryName: 'grp/half', ScanOnPush: 'true', Groups: ['foo'] });
    expect(retried.json().Tags).toEqual(expect.arrayContaining([{ Key: 'team', Value: 'a' }, ...orgTags('half')]));
    // What ECR holds, read with a separate client: the policy naming foo, the same repository.
    expect(
      JSON.parse((await policyOf('grp/half'))!).Statement[0].Condition.StringEqualsIgnoreCase['aws:PrincipalTag/spinup:spaceid'],
    ).toEqual(['${aws:ResourceTag/spinup:spaceid}', 'foo']);
    expect(proxy.count('DeleteRepository')).toBe(0);
    expect((await req('GET', `${base()}/grp/half`)).json().Groups).toEqual(['foo']);
  });

  it("takes its own policy back, and keeps the repository, when the completion's SetRepositoryPolicy fails", async () => {
    await leftover('again');
    proxy.fail('SetRepositoryPolicy', { code: 'ServerException', status: 500, times: 1 });
    const res = await req('POST', `${base()}/grp`, { RepositoryName: 'again' });
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(/Could not set the repository policy of grp\/again; nothing was changed\.$/);
    expect(await policyOf('grp/again')).toBeUndefined();
    expect((await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['grp/again'] }))).repositories).toHaveLength(1);
  });

  it('does not complete one that holds images, or differs from the request: 409 saying what to do, the repository untouched', async () => {
    await leftover('used');
    await ecr.send(new PutImageCommand({ repositoryName: 'grp/used', imageManifest: manifest(41), imageTag: 'v1' }));
    await leftover('other', { scanOnPush: true });
    await leftover('theirs', { org: 'orgb' });
    const before = await Promise.all(['grp/used', 'grp/other', 'grp/theirs'].map(snapshot));
    proxy.clear();
    const used = await req('POST', `${base()}/grp`, { RepositoryName: 'used' });
    expect(used.statusCode).toBe(409);
    expect(used.json().detail).toBe(
      `The repository grp/used already exists, without its pull policy (a create that failed part-way leaves it so), and it holds images: PUT /v1/ecr/${account}/repositories/grp/used with Groups sets the policy.`,
    );
    const other = await req('POST', `${base()}/grp`, { RepositoryName: 'other', Tags: [{ Key: 'team', Value: 'b' }] });
    expect(other.statusCode).toBe(409);
    expect(other.json().detail).toMatch(
      /and this request differs in ScanOnPush, Tags: PUT .* with Groups sets the policy, or DELETE it and create it again\.$/,
    );
    // Another org's repository is not this org's to complete, nor to describe.
    const theirs = await req('POST', `${base()}/grp`, { RepositoryName: 'theirs' });
    expect(theirs.statusCode).toBe(409);
    expect(theirs.json().detail).not.toMatch(/pull policy/);
    expect(proxy.operations.filter((o) => /^(Set|Put|Tag|Untag|Delete)/.test(o))).toEqual([]);
    expect(await Promise.all(['grp/used', 'grp/other', 'grp/theirs'].map(snapshot))).toEqual(before);
  });
});

describe('the 50-tag limit counts the service tags', () => {
  it('create with 48 tags (51 with Name, spinup:org, spinup:spaceid) is a 400 before AWS is called', async () => {
    proxy.clear();
    const res = await req('POST', `${base()}/grp`, { RepositoryName: 'tagged', Tags: manyTags(48) });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([{ field: 'body.Tags', message: expect.stringMatching(/51 tags/) }]);
    expect(proxy.operations).toEqual([]);
  });

  it('create with 47 tags works; the service tags make 50', async () => {
    const res = await req('POST', `${base()}/grp`, {
      RepositoryName: 'tagged',
      Tags: [...manyTags(47), { Key: 'spinup:org', Value: 'x' }],
    });
    expect(res.statusCode).toBe(200);
    expect((await snapshot('grp/tagged')).tags).toHaveLength(50);
  });

  it("update's merge past 50 is a 400 before any change; overwriting existing keys is fine", async () => {
    const before = await snapshot('grp/tagged');
    proxy.clear();
    const res = await req('PUT', `${base()}/grp/tagged`, { ScanOnPush: true, Tags: [{ Key: 'one-more', Value: 'x' }] });
    expect(res.statusCode).toBe(400);
    expect(proxy.operations.filter((o) => !['DescribeRepositories', 'ListTagsForResource'].includes(o))).toEqual([]);
    expect(await snapshot('grp/tagged')).toEqual(before);
    const overwrite = await req('PUT', `${base()}/grp/tagged`, { Tags: [{ Key: 'k0', Value: 'new' }] });
    expect(overwrite.statusCode).toBe(200);
    expect((await snapshot('grp/tagged')).tags).toContainEqual({ Key: 'k0', Value: 'new' });
  });

  it('TooManyTagsException from AWS is a 400 without Retry-After', async () => {
    proxy.fail('TagResource', { code: 'TooManyTagsException', message: 'too many', times: 1 });
    const res = await req('PUT', `${base()}/grp/alone`, { Tags: [{ Key: 'a', Value: 'b' }] });
    proxy.clear();
    expect(res.statusCode).toBe(400);
    expect(res.headers['retry-after']).toBeUndefined();
  });
});

describe('an update whose later call fails', () => {
  it('rolls ScanOnPush and the groups back when tagging fails, and says so', async () => {
    expect(
      (await req('POST', `${base()}/grp`, { RepositoryName: 'rollback', Groups: ['foo'], Tags: [{ Key: 'a', Value: '1' }] })).statusCode,
    ).toBe(200);
    const before = await snapshot('grp/rollback');
    proxy.fail('TagResource', { code: 'ServerException', status: 500, times: 1 });
    const res = await req('PUT', `${base()}/grp/rollback`, { ScanOnPush: true, Groups: ['bar'], Tags: [{ Key: 'a', Value: '2' }] });
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(
      /Could not merge the tags; nothing was changed \(rolled back: set the groups that may pull; set ScanOnPush to true\)/,
    );
    expect(await snapshot('grp/rollback')).toEqual(before);
  });

  it('rolls ScanOnPush back when setting the policy fails', async () => {
    const before = await snapshot('grp/rollback');
    proxy.fail('SetRepositoryPolicy', { code: 'ServerException', status: 500, times: 1 });
    const res = await req('PUT', `${base()}/grp/rollback`, { ScanOnPush: true, Groups: ['bar'] });
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(/rolled back: set ScanOnPush to true/);
    expect(await snapshot('grp/rollback')).toEqual(before);
  });

  it('says what stays applied when the rollback fails too', async () => {
    // ScanOnPush goes true, tagging fails, and putting ScanOnPush back (the second call) fails.
    proxy.fail('TagResource', { code: 'ServerException', status: 500, times: 1 });
    proxy.fail('PutImageScanningConfiguration', { code: 'ServerException', status: 500, skip: 1, times: 1 });
    const res = await req('PUT', `${base()}/grp/rollback`, { ScanOnPush: true, Tags: [{ Key: 'a', Value: '3' }] });
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(/STILL APPLIED: set ScanOnPush to true \(rolling it back failed: ServerException\)/);
    expect((await snapshot('grp/rollback')).scanOnPush).toBe(true);
    expect((await snapshot('grp/rollback')).tags).toContainEqual({ Key: 'a', Value: '1' });

    // The same PUT retried finishes the update: only what is still missing is sent.
    const retried = await req('PUT', `${base()}/grp/rollback`, { ScanOnPush: true, Tags: [{ Key: 'a', Value: '3' }] });
    expect(retried.statusCode).toBe(200);
    expect(proxy.operations.filter((o) => /^(Put|Tag)/.test(o))).toEqual(['TagResource']);
    expect((await snapshot('grp/rollback')).scanOnPush).toBe(true);
    expect((await snapshot('grp/rollback')).tags).toContainEqual({ Key: 'a', Value: '3' });
  });

  it('names a reset that failed the rollback as a reset, not a timeout', async () => {
    // The SDK names ECONNRESET TimeoutError; the answer said a timeout where AWS had refused at once.
    proxy.fail('TagResource', { code: 'ServerException', status: 500, times: 1 });
    proxy.fail('PutImageScanningConfiguration', { code: 'reset', reset: true, skip: 1 });
    const res = await req('PUT', `${base()}/grp/rollback`, { ScanOnPush: false, Tags: [{ Key: 'a', Value: '4' }] });
    proxy.clear();
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toMatch(/STILL APPLIED: set ScanOnPush to false \(rolling it back failed: ECONNRESET\)/);
    expect((await snapshot('grp/rollback')).scanOnPush).toBe(false);
  });
});
