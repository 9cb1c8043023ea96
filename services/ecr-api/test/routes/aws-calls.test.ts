import { CreateAccessKeyCommand } from '@aws-sdk/client-iam';
import { PutImageCommand, StartImageScanCommand } from '@aws-sdk/client-ecr';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, directEcr, manifest, newAccount, testApp } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';

/**
 * AWS calls per request, counted with the service's own aws_api_calls_total metric (credentials
 * already cached, so no AssumeRole): the numbers of the README's table, kept true by this test.
 * Lists use the `describe` strategy here (moto); with `tagging` a listing is one GetResources page
 * per 100 repositories instead of DescribeRepositories + one ListTagsForResource per repository.
 */
let app: App;
let account: string;

async function callsByOperation(): Promise<Map<string, number>> {
  const { values } = await app.metrics.getSingleMetric('aws_api_calls_total')!.get();
  const byOp = new Map<string, number>();
  for (const v of values) {
    const op = String((v.labels as Record<string, unknown>).operation);
    byOp.set(op, (byOp.get(op) ?? 0) + v.value);
  }
  return byOp;
}

/** The AWS operations one request made, sorted, with counts. */
async function calls(
  method: string,
  url: string,
  payload?: Record<string, unknown>,
): Promise<{ status: number; ops: Record<string, number> }> {
  const before = await callsByOperation();
  const res = await app.inject({ method: method as 'GET', url, headers: auth, ...(payload ? { payload } : {}) });
  const after = await callsByOperation();
  const ops: Record<string, number> = {};
  for (const [op, n] of [...after].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const d = n - (before.get(op) ?? 0);
    if (d) ops[op] = d;
  }
  return { status: res.statusCode, ops };
}

const OWNED = { DescribeRepositories: 1, ListTagsForResource: 1 };
const OWNED_TWICE = { DescribeRepositories: 2, ListTagsForResource: 2 };

beforeAll(async () => {
  app = await testApp();
  account = newAccount();
  // Warm the credential cache.
  expect((await app.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth })).statusCode).toBe(200);
});
afterAll(() => app?.close());

describe('AWS calls per request', () => {
  const repo = () => `/v1/ecr/${account}/repositories/grp/app`;

  it('repositories', async () => {
    expect(await calls('POST', `/v1/ecr/${account}/repositories/grp`, { RepositoryName: 'app', Groups: ['g2'] })).toEqual({
      status: 200,
      // ListUsers: IAM users a deleted repository of that name left at its path are deleted first.
      ops: { CreateRepository: 1, ListUsers: 1, SetRepositoryPolicy: 1 },
    });
    expect(await calls('GET', repo())).toEqual({ status: 200, ops: { ...OWNED, GetRepositoryPolicy: 1 } });
    expect(await calls('PUT', repo(), { ScanOnPush: true, Groups: [], Tags: [{ Key: 'a', Value: 'b' }] })).toEqual({
      status: 200,
      ops: { ...OWNED, GetRepositoryPolicy: 1, PutImageScanningConfiguration: 1, SetRepositoryPolicy: 1, TagResource: 1 },
    });
  });

  it('an update that changes nothing writes nothing (was: SetRepositoryPolicy and TagResource sent again)', async () => {
    const own = newAccount(); // apart from the scans' account, whose repositories are counted
    const url = `/v1/ecr/${own}/repositories/grp/same`;
    const body = { RepositoryName: 'same', ScanOnPush: true, Groups: ['g2'], Tags: [{ Key: 'a', Value: 'b' }] };
    expect((await app.inject({ method: 'POST', url: `/v1/ecr/${own}/repositories/grp`, headers: auth, payload: body })).statusCode).toBe(
      200,
    );
    const same = { ScanOnPush: 'true', Groups: ['g2'], Tags: [{ Key: 'a', Value: 'b' }] };
    expect(await calls('PUT', url, same)).toEqual({ status: 200, ops: { ...OWNED, GetRepositoryPolicy: 1 } });
    // one tag of two changed: only that one is written
    const put = await app.inject({
      method: 'PUT',
      url,
      headers: auth,
      payload: {
        Tags: [
          { Key: 'a', Value: 'b' },
          { Key: 'c', Value: 'd' },
        ],
      },
    });
    expect(put.statusCode).toBe(200);
    expect(put.json().Tags).toContainEqual({ Key: 'c', Value: 'd' });
    expect(put.json().Groups).toEqual(['g2']);
    expect(await calls('PUT', url, { Groups: ['g3'] })).toEqual({
      status: 200,
      ops: { ...OWNED, GetRepositoryPolicy: 1, SetRepositoryPolicy: 1 },
    });
  });

  it('image tags', async () => {
    const ecr = await directEcr(account);
    await ecr.send(new PutImageCommand({ repositoryName: 'grp/app', imageManifest: manifest(1), imageTag: 'v1' }));
    expect(await calls('GET', `${repo()}/images/v1`)).toEqual({
      status: 200,
      ops: { ...OWNED, DescribeImageScanFindings: 1, DescribeImages: 1 },
    });
    await ecr.send(new StartImageScanCommand({ repositoryName: 'grp/app', imageId: { imageTag: 'v1' } }));
    expect(await calls('GET', `${repo()}/images/v1`)).toEqual({
      status: 200,
      ops: { ...OWNED, DescribeImageScanFindings: 1, DescribeImages: 1 },
    });
    expect(await calls('DELETE', `${repo()}/images/v1`)).toEqual({ status: 200, ops: { ...OWNED, BatchDeleteImage: 1 } });
  });

  it('users', async () => {
    // The first user of an org in an account also creates the shared policy and group. The
    // ownership check twice: first, and again once the user is in the group (the repository may
    // have been deleted meanwhile).
    expect(await calls('POST', `${repo()}/users`, { UserName: 'ci' })).toEqual({
      status: 200,
      ops: {
        ...OWNED_TWICE,
        AddUserToGroup: 1,
        AttachGroupPolicy: 1,
        CreateGroup: 1,
        CreatePolicy: 1,
        CreateUser: 1,
        GetGroup: 1,
        GetPolicy: 1,
      },
    });
    expect(await calls('POST', `${repo()}/users`, { UserName: 'cd' })).toEqual({
      status: 200,
      ops: { ...OWNED_TWICE, AddUserToGroup: 1, AttachGroupPolicy: 1, CreateUser: 1, GetGroup: 1, GetPolicy: 1, GetPolicyVersion: 1 },
    });
    expect(await calls('GET', `${repo()}/users`)).toEqual({ status: 200, ops: { ...OWNED, ListUsers: 1 } });
    expect(await calls('GET', `${repo()}/users/ci`)).toEqual({
      status: 200,
      ops: { ...OWNED, GetUser: 1, ListAccessKeys: 1, ListGroupsForUser: 1 },
    });
    expect(await calls('PUT', `${repo()}/users/ci`, { Tags: [{ Key: 'a', Value: 'b' }] })).toEqual({
      status: 200,
      ops: { ...OWNED, GetUser: 1, TagUser: 1 },
    });
    await (await directIam(account)).send(new CreateAccessKeyCommand({ UserName: 'app-ci' }));
    expect(await calls('PUT', `${repo()}/users/ci`, { ResetKey: true })).toEqual({
      status: 200,
      ops: { ...OWNED, CreateAccessKey: 1, DeleteAccessKey: 1, GetUser: 1, ListAccessKeys: 1 },
    });
    expect(await calls('DELETE', `${repo()}/users/ci`)).toEqual({
      status: 200,
      ops: { ...OWNED, DeleteAccessKey: 1, DeleteUser: 1, GetUser: 1, ListAccessKeys: 1, ListGroupsForUser: 1, RemoveUserFromGroup: 1 },
    });
  });

  it('scans (two repositories, one image each)', async () => {
    const ecr = await directEcr(account);
    expect(
      (await app.inject({ method: 'POST', url: `/v1/ecr/${account}/repositories/grp`, headers: auth, payload: { RepositoryName: 'web' } }))
        .statusCode,
    ).toBe(200);
    await ecr.send(new PutImageCommand({ repositoryName: 'grp/app', imageManifest: manifest(2), imageTag: 'v2' }));
    await ecr.send(new PutImageCommand({ repositoryName: 'grp/web', imageManifest: manifest(3), imageTag: 'v1' }));
    expect(await calls('GET', `/v1/ecr/${account}/scanRepositories`)).toEqual({
      status: 200,
      // One StartImageScan per repository whose latest image is due.
      ops: { DescribeImages: 2, DescribeRepositories: 1, ListTagsForResource: 2, StartImageScan: 2 },
    });
    expect(await calls('GET', `/v1/ecr/${account}/scanFindings`)).toEqual({
      status: 200,
      ops: { DescribeImageScanFindings: 2, DescribeImages: 2, DescribeRepositories: 1, ListTagsForResource: 2 },
    });
  });

  it('deleting a repository with one user', async () => {
    expect(await calls('DELETE', repo())).toEqual({
      status: 200,
      ops: {
        ...OWNED,
        DeleteRepository: 1,
        DeleteUser: 1,
        GetRepositoryPolicy: 1,
        ListAccessKeys: 1,
        ListGroupsForUser: 1,
        // Before DeleteRepository, and again after it (users created meanwhile).
        ListUsers: 2,
        RemoveUserFromGroup: 1,
      },
    });
  });

  it('CORS preflight: none', async () => {
    const before = await callsByOperation();
    expect((await app.inject({ method: 'OPTIONS', url: repo() })).statusCode).toBe(200);
    expect(await callsByOperation()).toEqual(before);
  });
});
