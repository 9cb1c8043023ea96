import { DeleteUserCommand, type IAMClient } from '@aws-sdk/client-iam';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AwsClientFactory } from '../../src/aws/clients.js';
import { createAwsMetrics } from '../../src/aws/metrics.js';
import { motoEndpoint, REGION } from '../support/app.js';
import { FaultProxy } from '../support/fault-proxy.js';

/**
 * The other side of "a retried delete that meets not found is done" (lost-answers.test.ts): only
 * after an attempt that may have taken effect. The service's clients, against moto.
 */
let proxy: FaultProxy;
let factory: AwsClientFactory;
let iam: IAMClient;

beforeAll(async () => {
  proxy = await new FaultProxy(motoEndpoint()).start();
  factory = new AwsClientFactory({
    region: REGION,
    endpoint: proxy.endpoint,
    deadlineMs: 10_000,
    metrics: createAwsMetrics(new Registry()),
  });
  ({ iam } = factory.forAccount({ accessKeyId: 'testing', secretAccessKey: 'testing' }));
});
afterAll(async () => {
  factory?.destroy();
  await proxy?.stop();
});
beforeEach(() => proxy.clear());

describe('a delete of something that was never there', () => {
  it('is still NoSuchEntity', async () => {
    await expect(iam.send(new DeleteUserCommand({ UserName: 'never-there' }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });
    expect(proxy.count('DeleteUser')).toBe(1);
  });

  it('is still NoSuchEntity when the retry follows a refusal (throttling: nothing was done)', async () => {
    proxy.fail('DeleteUser', { code: 'Throttling', times: 1 });
    await expect(iam.send(new DeleteUserCommand({ UserName: 'never-there' }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });
    expect(proxy.count('DeleteUser')).toBe(2);
  });
});
