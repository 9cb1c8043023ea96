import {
  CreateRepositoryCommand,
  DescribeImagesCommand,
  GetRepositoryPolicyCommand,
  PutImageCommand,
  type ECRClient,
} from '@aws-sdk/client-ecr';
import { GetUserCommand, ListAccessKeysCommand, ListGroupsForUserCommand, type IAMClient } from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auth, directEcr, manifest, motoEndpoint, newAccount, testApp, repositoryExists } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';
import { RecordingProxy } from '../support/recording-proxy.js';

/**
 * A call that AWS applies but whose answer never comes back: moto applies it behind a proxy that
 * then drops the answer, and the SDK's attempt times out (600 ms here, 10 s in production). The SDK
 * keeps its default 3 attempts, so a create it retried would meet "already exists".
 */
const ORG = 'spindev';
let proxy: RecordingProxy;
let app: App;
let account: string;
let ecr: ECRClient;
let iam: IAMClient;

beforeAll(async () => {
  proxy = await new RecordingProxy(motoEndpoint()).start();
  app = await testApp({ org: ORG, deadlineMs: 12_000, aws: { endpoint: proxy.endpoint, attemptTimeouts: { requestTimeout: 600 } } });
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
  proxy.loseAnswer = () => false;
  proxy.reset();
});

/** Loses the answers to the first `times` calls of `operation`. */
function lose(operation: string, times = 1) {
  let left = times;
  proxy.loseAnswer = (op) => op === operation && left-- > 0;
}

const req = (method: 'POST' | 'PUT' | 'GET' | 'DELETE', path: string, payload?: Record<string, unknown>) =>
  app.inject({ method, url: `/v1/ecr/${account}/repositories/${path}`, headers: auth, ...(payload ? { payload } : {}) });
const exists = (repositoryName: string) => repositoryExists(ecr, repositoryName);
const keysOf = async (UserName: string) =>
  ((await iam.send(new ListAccessKeysCommand({ UserName }))).AccessKeyMetadata ?? []).map((k) => k.AccessKeyId);

describe('a create whose answer was lost', () => {
  it('is not retried into "already exists", is undone, and the retried request creates the repository', async () => {
    lose('CreateRepository');
    const res = await req('POST', 'grp', { RepositoryName: 'lost' });
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toBe(
      'AWS did not answer in time (TimeoutError); retry later. Could not create the repository grp/lost; nothing was changed.',
    );
    expect(proxy.count('CreateRepository')).toBe(1);
    expect(await exists('grp/lost')).toBe(false);

    const retried = await req('POST', 'grp', { RepositoryName: 'lost' });
    expect(retried.statusCode).toBe(200);
    expect((await ecr.send(new GetRepositoryPolicyCommand({ repositoryName: 'grp/lost' }))).policyText).toContain(
      'AllowPullImagesFromSpaceAndOrg',
    );
  });

  it('leaves a repository that was there before alone (the lost answer was "already exists")', async () => {
    await ecr.send(
      new CreateRepositoryCommand({
        repositoryName: 'grp/theirs',
        tags: [
          { Key: 'Name', Value: 'grp/theirs' },
          { Key: 'spinup:org', Value: 'orgb' },
          { Key: 'spinup:spaceid', Value: 'grp' },
        ],
      }),
    );
    lose('CreateRepository');
    const res = await req('POST', 'grp', { RepositoryName: 'theirs' });
    expect(res.statusCode).toBe(504);
    expect(await exists('grp/theirs')).toBe(true);
    expect(proxy.count('DeleteRepository')).toBe(0);
  });

  it('deletes a user whose CreateUser answer was lost, and the retried request creates it in its group', async () => {
    expect((await req('POST', 'grp', { RepositoryName: 'app' })).statusCode).toBe(200);
    lose('CreateUser');
    const res = await req('POST', 'grp/app/users', { UserName: 'lost' });
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toMatch(/Could not create the IAM user app-lost; nothing was changed\.$/);
    expect(proxy.count('CreateUser')).toBe(1);
    await expect(iam.send(new GetUserCommand({ UserName: 'app-lost' }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });

    expect((await req('POST', 'grp/app/users', { UserName: 'lost' })).statusCode).toBe(200);
    const groups = (await iam.send(new ListGroupsForUserCommand({ UserName: 'app-lost' }))).Groups!.map((g) => g.GroupName);
    expect(groups).toEqual([`SpinupECRAdminGroup-${ORG}`]);
  });

  it('takes a user whose AddUserToGroup answer was lost out of the group before deleting it (IAM requires it)', async () => {
    // Every attempt's: the SDK retries AddUserToGroup, which is idempotent.
    lose('AddUserToGroup', Infinity);
    const res = await req('POST', 'grp/app/users', { UserName: 'half' });
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toMatch(
      /Could not add app-half to the group .*; nothing was changed \(rolled back: create the IAM user app-half\)\.$/,
    );
    const ops = proxy.operations();
    expect(ops.indexOf('RemoveUserFromGroup')).toBeGreaterThan(ops.indexOf('AddUserToGroup'));
    expect(ops.indexOf('DeleteUser')).toBeGreaterThan(ops.indexOf('RemoveUserFromGroup'));
    await expect(iam.send(new GetUserCommand({ UserName: 'app-half' }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });
  });

  it('deletes an access key whose secret never came back, so a retried ResetKey is not refused for the key limit', async () => {
    expect((await req('POST', 'grp/app/users', { UserName: 'key' })).statusCode).toBe(200);
    const first = await req('PUT', 'grp/app/users/key', { ResetKey: true });
    expect(first.statusCode).toBe(200);
    const oldKey = first.json().AccessKey.AccessKeyId as string;

    proxy.reset();
    lose('CreateAccessKey');
    const res = await req('PUT', 'grp/app/users/key', { ResetKey: true });
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toMatch(/Could not create a new access key for app-key; nothing was changed\.$/);
    expect(proxy.count('CreateAccessKey')).toBe(1);
    expect(await keysOf('app-key')).toEqual([oldKey]);

    const retried = await req('PUT', 'grp/app/users/key', { ResetKey: true });
    expect(retried.statusCode).toBe(200);
    expect(await keysOf('app-key')).toEqual([retried.json().AccessKey.AccessKeyId]);
  });
});

describe('ResetKey when the delete of the old key got no answer', () => {
  async function userWithKey(user: string): Promise<string> {
    expect((await req('POST', 'grp/app/users', { UserName: user })).statusCode).toBe(200);
    const res = await req('PUT', `grp/app/users/${user}`, { ResetKey: true });
    expect(res.statusCode).toBe(200);
    return res.json().AccessKey.AccessKeyId as string;
  }

  it('keeps and answers the new key when the old one was deleted (every answer lost)', async () => {
    const oldKey = await userWithKey('del1');
    lose('DeleteAccessKey', Infinity);
    const res = await req('PUT', 'grp/app/users/del1', { ResetKey: true });
    expect(res.statusCode).toBe(200);
    const { AccessKey, DeletedAccessKeys } = res.json();
    expect(DeletedAccessKeys).toEqual([oldKey]);
    expect(AccessKey.SecretAccessKey).toEqual(expect.any(String));
    expect(await keysOf('app-del1')).toEqual([AccessKey.AccessKeyId]);
  });

  it('keeps and answers the new key when the SDK retried the delete into NoSuchEntity', async () => {
    const oldKey = await userWithKey('del2');
    lose('DeleteAccessKey');
    const res = await req('PUT', 'grp/app/users/del2', { ResetKey: true });
    expect(res.statusCode).toBe(200);
    expect(res.json().DeletedAccessKeys).toEqual([oldKey]);
    expect(await keysOf('app-del2')).toEqual([res.json().AccessKey.AccessKeyId]);
  });

  it('rolls the new key back when the old one is still there', async () => {
    const oldKey = await userWithKey('del3');
    proxy.hang = (op, call) => op === 'DeleteAccessKey' && call.params.AccessKeyId === oldKey;
    const res = await req('PUT', 'grp/app/users/del3', { ResetKey: true });
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toMatch(
      /Could not delete the access key \w+; nothing was changed \(rolled back: create a new access key for app-del3\)\.$/,
    );
    expect(await keysOf('app-del3')).toEqual([oldKey]);
  });

  it("keeps the new key, and says so, when the delete cannot be read back and the new key is the user's only one", async () => {
    await userWithKey('del4');
    let lists = 0;
    // The old key's delete is applied but never answered; so is the read-back (all 3 attempts);
    // the undo's own ListAccessKeys then finds the new key alone.
    proxy.loseAnswer = (op) => op === 'DeleteAccessKey' || (op === 'ListAccessKeys' && ++lists >= 2 && lists <= 4);
    const res = await req('PUT', 'grp/app/users/del4', { ResetKey: true });
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toMatch(
      /STILL APPLIED: create a new access key for app-del4 \(not rolled back: it is now the user's only access key, and its secret is not returned: reset the key again\); perhaps: delete the access key \w+\.$/,
    );
    expect(await keysOf('app-del4')).toHaveLength(1);

    proxy.loseAnswer = () => false;
    const retried = await req('PUT', 'grp/app/users/del4', { ResetKey: true });
    expect(retried.statusCode).toBe(200);
    expect(await keysOf('app-del4')).toEqual([retried.json().AccessKey.AccessKeyId]);
  });
});

const userGone = () => expect.objectContaining({ name: 'NoSuchEntityException' });

/** A repository user in the org's group, with one access key. */
async function userWithKey(repository: string, user: string): Promise<string> {
  expect((await req('POST', `grp/${repository}/users`, { UserName: user })).statusCode).toBe(200);
  const res = await req('PUT', `grp/${repository}/users/${user}`, { ResetKey: true });
  expect(res.statusCode).toBe(200);
  return res.json().AccessKey.AccessKeyId as string;
}

describe('a delete whose answer was lost, retried by the SDK into "not found"', () => {
  it('answers the deleted repository, gone from AWS (DeleteRepository)', async () => {
    expect((await req('POST', 'grp', { RepositoryName: 'gone' })).statusCode).toBe(200);
    lose('DeleteRepository');
    const res = await req('DELETE', 'grp/gone');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ RepositoryName: 'grp/gone', Users: [] });
    expect(proxy.count('DeleteRepository')).toBe(2);
    expect(await exists('grp/gone')).toBe(false);
  });

  it.each(['RemoveUserFromGroup', 'DeleteAccessKey', 'DeleteUser'])('answers the deleted user, gone from IAM (%s)', async (operation) => {
    expect((await req('POST', 'grp', { RepositoryName: `u-${operation.toLowerCase()}` })).statusCode).toBe(200);
    const key = await userWithKey(`u-${operation.toLowerCase()}`, 'ci');
    lose(operation);
    const res = await req('DELETE', `grp/u-${operation.toLowerCase()}/users/ci`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ UserName: 'ci', DeletedAccessKeys: [key], RemovedFromGroups: [`SpinupECRAdminGroup-${ORG}`] });
    expect(proxy.count(operation)).toBe(2);
    await expect(iam.send(new GetUserCommand({ UserName: `u-${operation.toLowerCase()}-ci` }))).rejects.toEqual(userGone());
  });

  it("answers the deleted repository and its users when a user's DeleteUser answer was lost", async () => {
    expect((await req('POST', 'grp', { RepositoryName: 'withuser' })).statusCode).toBe(200);
    await userWithKey('withuser', 'ci');
    lose('DeleteUser');
    const res = await req('DELETE', 'grp/withuser');
    expect(res.statusCode).toBe(200);
    expect(res.json().Users).toEqual(['ci']);
    expect(await exists('grp/withuser')).toBe(false);
    await expect(iam.send(new GetUserCommand({ UserName: 'withuser-ci' }))).rejects.toEqual(userGone());
  });

  it('answers the deleted image tag, gone from ECR (BatchDeleteImage)', async () => {
    expect((await req('POST', 'grp', { RepositoryName: 'img' })).statusCode).toBe(200);
    await ecr.send(new PutImageCommand({ repositoryName: 'grp/img', imageManifest: manifest(7), imageTag: 'v1' }));
    lose('BatchDeleteImage');
    const res = await req('DELETE', 'grp/img/images/v1');
    expect(res.statusCode).toBe(200);
    // The retry cannot tell the digest of the image the first attempt deleted.
    expect(res.json()).toEqual({ Failures: [], ImageIds: [{ ImageTag: 'v1' }] });
    expect((await ecr.send(new DescribeImagesCommand({ repositoryName: 'grp/img' }))).imageDetails).toEqual([]);
  });

  it('still answers 404 for a repository, user or image tag that was never there', async () => {
    expect((await req('POST', 'grp', { RepositoryName: 'here' })).statusCode).toBe(200);
    for (const path of ['grp/never', 'grp/here/users/never', 'grp/here/images/never']) {
      const res = await req('DELETE', path);
      expect(res.statusCode, path).toBe(404);
    }
    expect(await exists('grp/here')).toBe(true);
  });
});

describe('a delete whose every answer was lost', () => {
  it('answers the deleted user when every answer to its DeleteUser was lost (read back)', async () => {
    expect((await req('POST', 'grp', { RepositoryName: 'u-all' })).statusCode).toBe(200);
    await userWithKey('u-all', 'ci');
    lose('DeleteUser', Infinity);
    const res = await req('DELETE', 'grp/u-all/users/ci');
    expect(res.statusCode).toBe(200);
    expect(proxy.count('DeleteUser')).toBe(3);
    await expect(iam.send(new GetUserCommand({ UserName: 'u-all-ci' }))).rejects.toEqual(userGone());
  });

  it('answers the deleted repository when every answer to DeleteRepository was lost (read back)', async () => {
    expect((await req('POST', 'grp', { RepositoryName: 'all' })).statusCode).toBe(200);
    lose('DeleteRepository', Infinity);
    const res = await req('DELETE', 'grp/all');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ RepositoryName: 'grp/all', Users: [] });
    expect(await exists('grp/all')).toBe(false);
  });

  it('still answers 504 when DeleteRepository never reached ECR (read back: still there)', async () => {
    expect((await req('POST', 'grp', { RepositoryName: 'kept' })).statusCode).toBe(200);
    proxy.hang = (op) => op === 'DeleteRepository';
    const res = await req('DELETE', 'grp/kept');
    expect(res.statusCode).toBe(504);
    expect(res.json().detail).toBe('AWS did not answer in time (TimeoutError); retry later.');
    expect(await exists('grp/kept')).toBe(true);
  });
});
