import { DescribeRepositoriesCommand } from '@aws-sdk/client-ecr';
import { ListUsersCommand } from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AwsClientFactory, type AccountClient, type AccountClients, type AwsCredentials } from '../../src/aws/clients.js';
import { AccountSessions } from '../../src/aws/credentials.js';
import { createAwsMetrics } from '../../src/aws/metrics.js';
import { auth, BASE_AKID, BASE_SECRET, EXTERNAL_ID, metric, motoEndpoint, newAccount, REGION, ROLE, testApp } from '../support/app.js';
import { ExpiringProxy } from '../support/expiring-proxy.js';
import { RecordingProxy } from '../support/recording-proxy.js';
import { assumeRoleXml, StubAws, stsError } from '../support/stub-aws.js';

/**
 * The per-account credential cache, counted twice: by a proxy in front of moto (what really
 * reached STS) and by the service's own sts_assume_role_total metric.
 */
let proxy: RecordingProxy;
let app: App;
let clock = Date.now();

beforeAll(async () => {
  proxy = await new RecordingProxy(motoEndpoint()).start();
  app = await testApp({ org: 'spincache', sessionDuration: 900, aws: { endpoint: proxy.endpoint, now: () => clock } });
});
afterAll(async () => {
  await app?.close();
  await proxy?.stop();
});
beforeEach(() => proxy.reset());

const list = (account: string) => app.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });

describe('assumed-role credentials', () => {
  it('assumes the role once per account, not per request', async () => {
    const [a, b] = [newAccount(), newAccount()];
    for (let i = 0; i < 5; i++) {
      expect((await list(a)).statusCode).toBe(200);
      expect((await list(b)).statusCode).toBe(200);
    }
    const create = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${a}/repositories/grp`,
      headers: auth,
      payload: { RepositoryName: 'r' },
    });
    expect(create.statusCode).toBe(200);
    expect((await app.inject({ url: `/v1/ecr/${a}/repositories/grp/r/images`, headers: auth })).statusCode).toBe(200);

    expect(proxy.count('AssumeRole')).toBe(2);
    expect(proxy.count('DescribeRepositories')).toBeGreaterThanOrEqual(11);
    expect(await metric(app, 'sts_assume_role_total', { outcome: 'success' })).toBe(2);
    expect(await metric(app, 'aws_api_calls_total', { service: 'sts', operation: 'AssumeRole' })).toBe(2);
  });

  it('asks for arn:aws:iam::{account}:role/{role} with the external id and the org session tag', async () => {
    const account = newAccount();
    expect((await list(account)).statusCode).toBe(200);
    const [call] = proxy.calls.filter((c) => c.operation === 'AssumeRole');
    expect(call?.params).toMatchObject({
      RoleArn: `arn:aws:iam::${account}:role/${ROLE}`,
      RoleSessionName: 'ecr-api-spincache',
      ExternalId: EXTERNAL_ID,
      DurationSeconds: '900',
      'Tags.member.1.Key': 'spinup:org',
      'Tags.member.1.Value': 'spincache',
    });
    // The ECR calls are signed with the assumed credentials, so moto files them under that account.
    const describe = proxy.calls.find((c) => c.operation === 'DescribeRepositories');
    expect(describe?.status).toBe(200);
  });

  it('shares one AssumeRole among concurrent first requests for an account', async () => {
    const account = newAccount();
    const answers = await Promise.all(Array.from({ length: 8 }, () => list(account)));
    expect(answers.map((r) => r.statusCode)).toEqual(Array(8).fill(200));
    expect(proxy.count('AssumeRole')).toBe(1);
  });

  it('assumes the role again shortly before the credentials expire, and only then', async () => {
    const account = newAccount();
    expect((await list(account)).statusCode).toBe(200);
    expect(proxy.count('AssumeRole')).toBe(1);

    clock += 9 * 60_000; // 15-minute credentials, refreshed 5 minutes early: still good at +9 min
    expect((await list(account)).statusCode).toBe(200);
    expect(proxy.count('AssumeRole')).toBe(1);

    clock += 2 * 60_000; // +11 min: inside the refresh margin
    expect((await list(account)).statusCode).toBe(200);
    expect((await list(account)).statusCode).toBe(200);
    expect(proxy.count('AssumeRole')).toBe(2);

    clock += 60 * 60_000; // long past expiry
    expect((await list(account)).statusCode).toBe(200);
    expect(proxy.count('AssumeRole')).toBe(3);
  });
});

describe('a failed refresh', () => {
  it('keeps using the cached credentials while they are valid, then answers the failure', async () => {
    let now = Date.now();
    let stsDown = false;
    const stub = new StubAws({
      AssumeRole: () =>
        stsDown ? stsError('InternalFailure', 'STS is down', 500) : assumeRoleXml({ expiration: new Date(Date.now() + 3600_000) }),
      GetResources: () => ({ json: { ResourceTagMappingList: [] } }),
    });
    const stubbed = await testApp({
      org: 'spinstale',
      listStrategy: 'tagging',
      aws: { endpoint: 'http://127.0.0.1:9', requestHandler: stub, maxAttempts: 1, now: () => now },
    });
    try {
      const account = newAccount();
      const get = () => stubbed.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
      expect((await get()).statusCode).toBe(200);
      expect(stub.count('AssumeRole')).toBe(1);

      stsDown = true;
      now += 56 * 60_000; // inside the 5-minute refresh margin of 60-minute credentials
      expect((await get()).statusCode).toBe(200); // refresh failed: the old credentials still serve
      expect((await get()).statusCode).toBe(200);
      expect(stub.count('AssumeRole')).toBe(3); // each request tries again
      expect(await metric(stubbed, 'sts_assume_role_total', { outcome: 'InternalFailure' })).toBe(2);

      now += 4 * 60_000 - 20_000; // 20 s before expiry: too close to fall back on
      expect((await get()).statusCode).toBe(502);

      stsDown = false;
      expect((await get()).statusCode).toBe(200);
      expect(stub.count('AssumeRole')).toBe(5);
    } finally {
      await stubbed.close();
    }
  });
});

describe('assumed credentials that AWS refuses before the cache expects', () => {
  it('are forgotten: the request is a 503 to retry, and the retry assumes the role again (was 502 until the cached TTL ran out)', async () => {
    const expiring = await new ExpiringProxy(motoEndpoint()).start();
    const refused = await testApp({ org: 'spinexpired', aws: { endpoint: expiring.endpoint } });
    try {
      const account = newAccount();
      const create = (name: string) =>
        refused.inject({ method: 'POST', url: `/v1/ecr/${account}/repositories/grp`, headers: auth, payload: { RepositoryName: name } });
      const get = (name: string) => refused.inject({ url: `/v1/ecr/${account}/repositories/grp/${name}`, headers: auth });
      expect((await create('app')).statusCode).toBe(200);
      expect(expiring.count('AssumeRole')).toBe(1);

      // AWS now refuses the cached credentials (a host clock stepped back, a resumed VM): ECR's JSON protocol
      expiring.expireSeenKeys();
      const first = await get('app');
      expect(first.statusCode).toBe(503);
      expect(first.headers['retry-after']).toBe('1');
      expect(first.json().detail).toContain('ExpiredTokenException');
      const again = await get('app');
      expect(again.statusCode).toBe(200);
      expect(again.json().RepositoryName).toBe('grp/app');
      expect(expiring.count('AssumeRole')).toBe(2);

      // a write refused the same way changes nothing, and its retry works
      expiring.expireSeenKeys();
      expect((await create('other')).statusCode).toBe(503);
      expect((await get('other')).statusCode).toBe(404);
      expect((await create('other')).statusCode).toBe(200);
      expect(expiring.count('AssumeRole')).toBe(3);
    } finally {
      await refused.close();
      await expiring.stop();
    }
  });
});

describe('a refresh while STS hangs', () => {
  it('answers with the cached credentials at once while they are valid, the AssumeRole going on apart (was: each request waited its whole deadline, then 504)', async () => {
    const hung = await new RecordingProxy(motoEndpoint()).start();
    let now = Date.now();
    const slow = await testApp({
      org: 'spinhang',
      sessionDuration: 900,
      deadlineMs: 2000,
      aws: { endpoint: hung.endpoint, now: () => now },
    });
    try {
      const account = newAccount();
      const get = () => slow.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
      expect((await get()).statusCode).toBe(200);
      expect(hung.count('AssumeRole')).toBe(1);

      hung.hang = (operation) => operation === 'AssumeRole';
      now += 11 * 60_000; // 15-minute credentials: inside the 5-minute refresh margin, still valid
      for (let i = 0; i < 3; i++) {
        const started = Date.now();
        const res = await get();
        expect(res.statusCode).toBe(200);
        expect(Date.now() - started).toBeLessThan(1000);
      }
      expect(hung.count('AssumeRole')).toBe(2); // one refresh in flight, shared

      now += 4 * 60_000 - 20_000; // 20 s before expiry: too close to use; the request waits for STS
      const late = await get();
      expect(late.statusCode).toBe(504);
    } finally {
      await slow.close();
      await hung.stop();
    }
  });
});

/** The service's client factory, noting each client it builds for an account. */
class NotingFactory extends AwsClientFactory {
  readonly built: string[] = [];

  override forAccount(credentials: AwsCredentials, onCreate?: (client: AccountClient) => void): AccountClients {
    return super.forAccount(credentials, (client) => {
      this.built.push(client.constructor.name);
      onCreate?.(client);
    });
  }
}

describe("an account's clients", () => {
  let expiring: ExpiringProxy;
  let registry: Registry;
  let factory: NotingFactory;
  let sessions: AccountSessions;

  beforeEach(async () => {
    expiring = await new ExpiringProxy(motoEndpoint()).start();
    registry = new Registry();
    const metrics = createAwsMetrics(registry);
    factory = new NotingFactory({
      region: REGION,
      endpoint: expiring.endpoint,
      baseCredentials: { accessKeyId: BASE_AKID, secretAccessKey: BASE_SECRET },
      deadlineMs: 10_000,
      metrics,
    });
    sessions = new AccountSessions({
      clients: factory,
      role: ROLE,
      org: 'spinlazy',
      region: REGION,
      durationSeconds: 900,
      deadlineMs: 10_000,
      metrics,
    });
  });
  afterEach(async () => {
    factory.destroy();
    await expiring.stop();
  });

  const calls = async (service: string, operation: string) => {
    const { values } = await registry.getSingleMetric('aws_api_calls_total')!.get();
    return values.filter((v) => v.labels.service === service && v.labels.operation === operation).reduce((sum, v) => sum + v.value, 0);
  };

  it('are built on first use: an account used only for ECR builds no IAM or tagging client', async () => {
    const account = newAccount();
    const session = await sessions.get(account);
    expect(factory.built).toEqual([]);
    await session.ecr.send(new DescribeRepositoriesCommand({}));
    await (await sessions.get(account)).ecr.send(new DescribeRepositoriesCommand({}));
    expect(factory.built).toEqual(['ECRClient']);

    // built when first used, prepared as the others (counted by the metrics)
    await expect(session.iam.send(new ListUsersCommand({}))).resolves.toMatchObject({ Users: [] });
    expect(session.iam).toBe(session.iam);
    expect(factory.built).toEqual(['ECRClient', 'IAMClient']);
    expect(await calls('ecr', 'DescribeRepositories')).toBe(2);
    expect(await calls('iam', 'ListUsers')).toBe(1);
    expect(expiring.count('AssumeRole')).toBe(1);
  });

  it('built after the session was cached still forget it when AWS refuses its credentials', async () => {
    const account = newAccount();
    const session = await sessions.get(account);
    await session.ecr.send(new DescribeRepositoriesCommand({}));
    expiring.expireSeenKeys();

    // the IAM client is built now, and AWS refuses the credentials to it (IAM's query protocol)
    await expect(session.iam.send(new ListUsersCommand({}))).rejects.toMatchObject({ name: 'ExpiredToken' });
    expect(factory.built).toEqual(['ECRClient', 'IAMClient']);
    const again = await sessions.get(account);
    expect(again).not.toBe(session);
    expect(expiring.count('AssumeRole')).toBe(2);
    await expect(again.iam.send(new ListUsersCommand({}))).resolves.toMatchObject({ Users: [] });
  });
});
