import { DescribeImagesCommand, DescribeRepositoriesCommand } from '@aws-sdk/client-ecr';
import { ListUsersCommand } from '@aws-sdk/client-iam';
import { GetResourcesCommand } from '@aws-sdk/client-resource-groups-tagging-api';
import { GetCallerIdentityCommand } from '@aws-sdk/client-sts';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { AwsClientFactory } from '../../src/aws/clients.js';
import { createAwsMetrics } from '../../src/aws/metrics.js';
import { MAX_SOCKETS } from '../../src/aws/pools.js';
import { auth, motoEndpoint, newAccount, REGION, testApp } from '../support/app.js';
import { RecordingProxy } from '../support/recording-proxy.js';

/**
 * Every AWS service behind one endpoint (moto, as LocalStack or a proxy would be): DescribeImages
 * hangs and its calls hold every socket of ECR's pool. A call waiting for a socket fails at the
 * SDK's 3 s connect timeout, so with one pool for every service STS, IAM and tagging calls failed
 * too. One attempt per call, so such a call is not retried until a socket frees.
 */
const DEADLINE_MS = 6000;
const closers: (() => unknown)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

/** A proxy in front of moto that never answers DescribeImages. */
async function hangDescribeImages(): Promise<RecordingProxy> {
  const proxy = await new RecordingProxy(motoEndpoint()).start();
  closers.push(() => proxy.stop());
  proxy.hang = (operation) => operation === 'DescribeImages';
  return proxy;
}

async function untilHanging(proxy: RecordingProxy, count: number): Promise<void> {
  const end = Date.now() + 2500;
  while (proxy.count('DescribeImages') < count && Date.now() < end) await sleep(20);
  expect(proxy.count('DescribeImages')).toBe(count);
}

describe('a connection pool per AWS service', () => {
  it("answers a request's STS and tagging calls while hung image lists hold every socket of ECR's pool", async () => {
    const proxy = await hangDescribeImages();
    const app = await testApp({ deadlineMs: DEADLINE_MS, listStrategy: 'tagging', aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
    closers.push(() => app.close());
    const account = newAccount();
    const created = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${account}/repositories/g1`,
      headers: auth,
      payload: { RepositoryName: 'pool' },
    });
    expect(created.statusCode).toBe(200);
    // moto's first tagging call takes seconds (it sets up every service's backend).
    expect((await app.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth })).statusCode).toBe(200);

    const hung = Array.from({ length: MAX_SOCKETS + 16 }, () =>
      app.inject({ url: `/v1/ecr/${account}/repositories/g1/pool/images`, headers: auth }),
    );
    await untilHanging(proxy, MAX_SOCKETS);

    // An account the service has no credentials of yet: AssumeRole (STS), then GetResources (tagging).
    const listed = await app.inject({ url: `/v1/ecr/${newAccount()}/repositories`, headers: auth });
    expect(listed.statusCode, listed.body).toBe(200);
    expect(listed.json()).toEqual([]);

    await proxy.stop();
    await Promise.all(hung);
  }, 15_000);

  it("gives STS, IAM and tagging calls their own sockets while ECR's are all held", async () => {
    const proxy = await hangDescribeImages();
    const factory = new AwsClientFactory({
      region: REGION,
      endpoint: proxy.endpoint,
      baseCredentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
      maxAttempts: 1,
      deadlineMs: DEADLINE_MS,
      metrics: createAwsMetrics(new Registry()),
    });
    closers.push(() => factory.destroy());
    const { ecr, iam, tagging } = factory.forAccount({ accessKeyId: 'testing', secretAccessKey: 'testing' });
    const hung = Array.from({ length: MAX_SOCKETS }, () =>
      ecr.send(new DescribeImagesCommand({ repositoryName: 'g1/pool' })).catch((err: unknown) => err),
    );
    await untilHanging(proxy, MAX_SOCKETS);

    const queued = ecr.send(new DescribeRepositoriesCommand({})).catch((err: unknown) => err);
    await expect(factory.sts().send(new GetCallerIdentityCommand({}))).resolves.toMatchObject({ Account: expect.any(String) });
    await expect(iam.send(new ListUsersCommand({}))).resolves.toMatchObject({ Users: expect.any(Array) });
    await expect(tagging.send(new GetResourcesCommand({}))).resolves.toMatchObject({ ResourceTagMappingList: expect.any(Array) });
    // ECR's own pool is full: its next call waits for a socket and fails at the connect timeout.
    expect(await queued).toMatchObject({ name: 'TimeoutError' });

    await proxy.stop();
    await Promise.all(hung);
  }, 15_000);
});
