import { CreateRepositoryCommand, DescribeRepositoriesCommand, ListTagsForResourceCommand, type ECRClient } from '@aws-sdk/client-ecr';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, directEcr, newAccount, testApp } from '../support/app.js';
import { RecordingProxy } from '../support/recording-proxy.js';
import { motoEndpoint } from '../support/app.js';

/**
 * Two organisations share two accounts. Org A and org B each run their own ecr-api; neither may
 * see, change or delete the other's repositories, nor those of another group of its own org.
 */
let proxy: RecordingProxy;
let orgA: App;
let orgB: App;
let acct1: string;
let acct2: string;
let ecr1: ECRClient;

const WRITES = ['CreateRepository', 'DeleteRepository', 'TagResource', 'UntagResource', 'PutImageScanningConfiguration'];

const req = (app: App, method: string, url: string, payload?: Record<string, unknown>) =>
  app.inject({ method: method as 'GET', url, headers: auth, ...(payload === undefined ? {} : { payload }) });

async function snapshot(ecr: ECRClient, name: string) {
  const repo = (await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [name] }))).repositories![0]!;
  const tags = (await ecr.send(new ListTagsForResourceCommand({ resourceArn: repo.repositoryArn }))).tags;
  return { scanOnPush: repo.imageScanningConfiguration?.scanOnPush, tags };
}

beforeAll(async () => {
  proxy = await new RecordingProxy(motoEndpoint()).start();
  // Org B's calls go through the proxy, so we can see exactly what it asked AWS to do.
  orgA = await testApp({ org: 'orga' });
  orgB = await testApp({ org: 'orgb', aws: { endpoint: proxy.endpoint } });
  acct1 = newAccount();
  acct2 = newAccount();
  ecr1 = await directEcr(acct1);

  const setup: [App, string, string, string][] = [
    [orgA, acct1, 'g1', 'app'],
    [orgA, acct1, 'g1', 'web'],
    [orgB, acct1, 'g2', 'tool'],
    [orgB, acct2, 'g1', 'app'], // the same name as org A's, in the other account
  ];
  for (const [app, account, group, name] of setup) {
    const res = await req(app, 'POST', `/v1/ecr/${account}/repositories/${group}`, {
      RepositoryName: name,
      ScanOnPush: 'true',
      Tags: [{ Key: 'owner', Value: 'me' }],
    });
    expect(res.statusCode).toBe(200);
  }
  // Made outside the service: org A's tags but filed under another group than its name says,
  // and a repository with no tags at all.
  await ecr1.send(
    new CreateRepositoryCommand({
      repositoryName: 'g3/stray',
      tags: [
        { Key: 'spinup:org', Value: 'orga' },
        { Key: 'spinup:spaceid', Value: 'g1' },
      ],
    }),
  );
  await ecr1.send(new CreateRepositoryCommand({ repositoryName: 'g1/untagged' }));
});
afterAll(async () => {
  await orgA?.close();
  await orgB?.close();
  await proxy?.stop();
});

describe('org isolation', () => {
  it('lists only the repositories of the org, per account', async () => {
    expect((await req(orgA, 'GET', `/v1/ecr/${acct1}/repositories`)).json()).toEqual(['g1/app', 'g1/web']);
    expect((await req(orgB, 'GET', `/v1/ecr/${acct1}/repositories`)).json()).toEqual(['g2/tool']);
    expect((await req(orgA, 'GET', `/v1/ecr/${acct2}/repositories`)).json()).toEqual([]);
    expect((await req(orgB, 'GET', `/v1/ecr/${acct2}/repositories`)).json()).toEqual(['g1/app']);
  });

  it('lists only the repositories of the org and group', async () => {
    expect((await req(orgA, 'GET', `/v1/ecr/${acct1}/repositories/g1`)).json()).toEqual(['g1/app', 'g1/web']);
    expect((await req(orgB, 'GET', `/v1/ecr/${acct1}/repositories/g1`)).json()).toEqual([]);
    expect((await req(orgA, 'GET', `/v1/ecr/${acct1}/repositories/g3`)).json()).toEqual([]);
    expect((await req(orgA, 'GET', `/v1/ecr/${acct1}/repositories/g2`)).json()).toEqual([]);
  });

  it("answers 404 to GET, PUT, DELETE and images of another org's repository, and touches nothing", async () => {
    const before = await snapshot(ecr1, 'g1/app');
    const missing = (await req(orgB, 'GET', `/v1/ecr/${acct1}/repositories/g1/nothing-here`)).json();
    proxy.reset();
    const attempts: [string, string, Record<string, unknown>?][] = [
      ['GET', `/v1/ecr/${acct1}/repositories/g1/app`],
      ['PUT', `/v1/ecr/${acct1}/repositories/g1/app`, { ScanOnPush: 'false', Tags: [{ Key: 'owner', Value: 'orgb' }] }],
      ['DELETE', `/v1/ecr/${acct1}/repositories/g1/app`],
      ['GET', `/v1/ecr/${acct1}/repositories/g1/app/images`],
    ];
    for (const [method, url, payload] of attempts) {
      const res = await req(orgB, method, url, payload);
      expect(res.statusCode, `${method} ${url}`).toBe(404);
      // The same answer as for a repository that does not exist: no hint that it does.
      expect(res.json()).toEqual({ ...missing, detail: 'Repository g1/app not found.' });
    }
    // Org B only read: no write reached AWS, and the repository is exactly as it was.
    expect(proxy.operations().filter((op) => WRITES.includes(op))).toEqual([]);
    expect(proxy.operations()).toEqual(expect.arrayContaining(['DescribeRepositories', 'ListTagsForResource']));
    expect(await snapshot(ecr1, 'g1/app')).toEqual(before);
  });

  it("answers 404 for a repository of the org filed under another group, and for one without the org's tags", async () => {
    // Named g3/stray but tagged spinup:spaceid=g1: neither g3 nor g1 owns it through this service.
    expect((await req(orgA, 'GET', `/v1/ecr/${acct1}/repositories/g3/stray`)).statusCode).toBe(404);
    expect((await req(orgA, 'DELETE', `/v1/ecr/${acct1}/repositories/g3/stray`)).statusCode).toBe(404);
    expect((await req(orgA, 'GET', `/v1/ecr/${acct1}/repositories/g1/untagged`)).statusCode).toBe(404);
    expect((await req(orgA, 'PUT', `/v1/ecr/${acct1}/repositories/g1/untagged`, { Tags: [{ Key: 'a', Value: 'b' }] })).statusCode).toBe(
      404,
    );
    expect((await ecr1.send(new DescribeRepositoriesCommand({ repositoryNames: ['g3/stray', 'g1/untagged'] }))).repositories).toHaveLength(
      2,
    );
    const untagged = (await ecr1.send(new DescribeRepositoriesCommand({ repositoryNames: ['g1/untagged'] }))).repositories![0]!;
    expect((await ecr1.send(new ListTagsForResourceCommand({ resourceArn: untagged.repositoryArn }))).tags).toEqual([]);
  });

  it('keeps accounts apart: the same path in another account is another repository', async () => {
    const a = await req(orgA, 'GET', `/v1/ecr/${acct2}/repositories/g1/app`);
    expect(a.statusCode).toBe(404);
    const b = await req(orgB, 'GET', `/v1/ecr/${acct2}/repositories/g1/app`);
    expect(b.statusCode).toBe(200);
    expect(b.json()).toMatchObject({ RegistryId: acct2, Tags: expect.arrayContaining([{ Key: 'spinup:org', Value: 'orgb' }]) });
  });

  it('answers 409, changing nothing, when creating a name another org holds in the account', async () => {
    const before = await snapshot(ecr1, 'g2/tool');
    const res = await req(orgA, 'POST', `/v1/ecr/${acct1}/repositories/g2`, { RepositoryName: 'tool' });
    expect(res.statusCode).toBe(409);
    expect(await snapshot(ecr1, 'g2/tool')).toEqual(before);
  });

  it('still lets each org manage its own repositories', async () => {
    const put = await req(orgB, 'PUT', `/v1/ecr/${acct1}/repositories/g2/tool`, { ScanOnPush: 'false' });
    expect(put.statusCode).toBe(200);
    expect(put.json().ScanOnPush).toBe('false');
    expect((await req(orgB, 'DELETE', `/v1/ecr/${acct1}/repositories/g2/tool`)).statusCode).toBe(200);
    expect((await req(orgB, 'GET', `/v1/ecr/${acct1}/repositories`)).json()).toEqual([]);
    expect((await req(orgA, 'GET', `/v1/ecr/${acct1}/repositories`)).json()).toEqual(['g1/app', 'g1/web']);
  });
});
