import { DescribeRepositoriesCommand, GetRepositoryPolicyCommand, type ECRClient } from '@aws-sdk/client-ecr';
import { GetUserCommand, ListGroupsForUserCommand, type IAMClient } from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auth, directEcr, motoEndpoint, newAccount, testApp, repositoryExists } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';
import { RecordingProxy } from '../support/recording-proxy.js';

/**
 * A change whose AWS call hangs until the request's deadline is rolled back all the same, and
 * answered within that deadline: its steps stop early enough to leave its undo a deadline of its
 * own (a quarter of 1 s here, 3 s in production). moto behind a proxy that never answers chosen
 * operations; a 1 s deadline keeps it short (production: 25 s).
 */
const DEADLINE_MS = 1000;
/**
 * Past the deadline: the answer's own way out, and timers firing late on a busy machine (1.3-1.4 s
 * seen under a parallel suite at load 7). Before the undo had a budget, the answer came at 4 s.
 */
const SLACK_MS = 600;
let proxy: RecordingProxy;
let app: App;
let account: string;
let ecr: ECRClient;
let iam: IAMClient;

beforeAll(async () => {
  proxy = await new RecordingProxy(motoEndpoint()).start();
  app = await testApp({ deadlineMs: DEADLINE_MS, aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
  account = newAccount();
  ecr = await directEcr(account);
  iam = await directIam(account);
});
afterAll(async () => {
  await app?.close();
  await proxy?.stop();
});
beforeEach(() => {
  proxy.hang = () => false;
  proxy.reset();
});

const hang = (...operations: string[]) => (proxy.hang = (operation) => operations.includes(operation));
const exists = (repositoryName: string) => repositoryExists(ecr, repositoryName);
const create = (name: string, extra: Record<string, unknown> = {}) =>
  app.inject({ method: 'POST', url: `/v1/ecr/${account}/repositories/grp`, headers: auth, payload: { RepositoryName: name, ...extra } });

describe('a change that reaches its deadline part-way', () => {
  it('deletes a repository whose policy call hung, so that a retry can create it', async () => {
    hang('SetRepositoryPolicy');
    const started = Date.now();
    const res = await create('halfway');
    expect(Date.now() - started).toBeLessThan(DEADLINE_MS + SLACK_MS);
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toBe(
      'AWS did not answer within 1 s; retry later. Could not set the repository policy of grp/halfway; nothing was changed (rolled back: create the repository grp/halfway).',
    );
    expect(await exists('grp/halfway')).toBe(false);

    proxy.hang = () => false;
    expect((await create('halfway')).statusCode).toBe(200);
  });

  it('answers 200 for a create whose SetRepositoryPolicy took effect but whose answer was lost', async () => {
    proxy.loseAnswer = (operation) => operation === 'SetRepositoryPolicy';
    try {
      const res = await create('answerlost', { Groups: ['g1'] });
      // Before: the repository, complete with the policy asked for, was deleted (504, nothing was changed).
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ RepositoryName: 'grp/answerlost', Groups: ['g1'] });
    } finally {
      proxy.loseAnswer = () => false;
    }
    expect(proxy.count('DeleteRepository')).toBe(0);
    expect((await ecr.send(new GetRepositoryPolicyCommand({ repositoryName: 'grp/answerlost' }))).policyText).toContain('"g1"');
  });

  it('restores the previous ScanOnPush of an update whose policy call hung', async () => {
    expect((await create('updated')).statusCode).toBe(200);
    const before = (await ecr.send(new GetRepositoryPolicyCommand({ repositoryName: 'grp/updated' }))).policyText;
    hang('SetRepositoryPolicy');
    const res = await app.inject({
      method: 'PUT',
      url: `/v1/ecr/${account}/repositories/grp/updated`,
      headers: auth,
      payload: { ScanOnPush: true, Groups: ['other'] },
    });
    expect(res.statusCode).toBe(504);
    // The policy call got no answer, so it may have been applied: its undo hangs too, in half the time.
    expect(res.json().detail).toMatch(
      /Could not set the groups that may pull\. STILL APPLIED: perhaps: set the groups that may pull \(rolling it back failed: AwsDeadlineExceeded\); rolled back: set ScanOnPush to true\.$/,
    );
    const [repo] = (await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['grp/updated'] }))).repositories!;
    expect(repo!.imageScanningConfiguration?.scanOnPush).toBe(false);
    expect((await ecr.send(new GetRepositoryPolicyCommand({ repositoryName: 'grp/updated' }))).policyText).toBe(before);
  });

  it("says STILL APPLIED when the undo hangs too, within the request's deadline", async () => {
    hang('SetRepositoryPolicy', 'DeleteRepository');
    const started = Date.now();
    const res = await create('stuck');
    const took = Date.now() - started;
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toMatch(
      /Could not set the repository policy of grp\/stuck\. STILL APPLIED: create the repository grp\/stuck \(rolling it back failed: AwsDeadlineExceeded\)\.$/,
    );
    expect(proxy.count('DeleteRepository')).toBe(1);
    expect(took).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    expect(took).toBeLessThan(DEADLINE_MS + SLACK_MS);
    expect(await exists('grp/stuck')).toBe(true);

    // AWS answers again; the client retries the same POST. Before: 409, the repository left without its policy.
    // A create may still be under way for a repository without a policy for the deadline (+ 2 s of
    // clock slack) after it was created: until then the retry is a 409 saying when to retry.
    proxy.hang = () => false;
    const early = await create('stuck');
    expect(early.statusCode).toBe(409);
    expect(early.json().detail).toMatch(/may still be under way\. Retry in [1-3] s: /);
    const wait = Number(early.headers['retry-after']);
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(3);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    const retried = await create('stuck');
    expect(retried.statusCode).toBe(200);
    expect((await ecr.send(new GetRepositoryPolicyCommand({ repositoryName: 'grp/stuck' }))).policyText).toContain(
      'AllowPullImagesFromSpaceAndOrg',
    );
  });

  it('leaves a user outside its group when AddUserToGroup and the undo hang, and the retried POST completes it', async () => {
    expect((await create('withusers')).statusCode).toBe(200);
    const users = `/v1/ecr/${account}/repositories/grp/withusers/users`;
    const body = { UserName: 'ci', Tags: [{ Key: 'team', Value: 'a' }] };
    hang('AddUserToGroup', 'DeleteUser');
    const res = await app.inject({ method: 'POST', url: users, headers: auth, payload: body });
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toMatch(/STILL APPLIED: create the IAM user withusers-ci \(rolling it back failed: AwsDeadlineExceeded\)/);
    expect((await iam.send(new ListGroupsForUserCommand({ UserName: 'withusers-ci' }))).Groups).toEqual([]);

    // AWS answers again; the client retries the same POST. Before: 409, the user left outside its group for good.
    // A create may still be under way for a user in no group for the deadline (+ 2 s of clock
    // slack) after it was created: until then the retry is a 409 saying when to retry.
    proxy.hang = () => false;
    const early = await app.inject({ method: 'POST', url: users, headers: auth, payload: body });
    expect(early.statusCode).toBe(409);
    expect(early.json().detail).toMatch(
      /in no group yet, created \d+ s ago: the create that made it may still be under way\. Retry in [1-3] s: /,
    );
    const wait = Number(early.headers['retry-after']);
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(3);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    const retried = await app.inject({ method: 'POST', url: users, headers: auth, payload: body });
    expect(retried.statusCode).toBe(200);
    expect(retried.json()).toMatchObject({ UserName: 'ci', AccessKeys: [], Groups: ['SpinupECRAdminGroup'] });
    const groups = (await iam.send(new ListGroupsForUserCommand({ UserName: 'withusers-ci' }))).Groups!.map((g) => g.GroupName);
    expect(groups).toEqual(['SpinupECRAdminGroup-spindev']);
    expect((await iam.send(new GetUserCommand({ UserName: 'withusers-ci' }))).User!.Tags).toEqual(
      expect.arrayContaining([
        { Key: 'team', Value: 'a' },
        { Key: 'ResourceName', Value: 'grp/withusers' },
      ]),
    );
  });
});
