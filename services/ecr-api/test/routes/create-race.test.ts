import { GetRepositoryPolicyCommand, type ECRClient } from '@aws-sdk/client-ecr';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auth, directEcr, motoEndpoint, newAccount, repositoryExists, testApp } from '../support/app.js';
import { FaultProxy } from '../support/fault-proxy.js';

/**
 * Creates of one repository racing each other, and a create racing an update, with AWS slowed by
 * a proxy in front of moto. Whatever the interleaving, an answer 200 must be what ECR holds
 * afterwards (the repository, with the policy naming the answer's Groups), and nothing answered
 * 200 is deleted by another request's rollback. `app` and `other` are two replicas: separate
 * processes' worth of state (locks) over the same AWS.
 */
let proxy: FaultProxy;
let app: App;
let other: App;
let account: string;
let ecr: ECRClient;

beforeAll(async () => {
  proxy = await new FaultProxy(motoEndpoint()).start();
  app = await testApp({ aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
  other = await testApp({ aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
  account = newAccount();
  ecr = await directEcr(account);
});
afterAll(async () => {
  await app?.close();
  await other?.close();
  await proxy?.stop();
});
beforeEach(() => proxy.clear());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const create = (on: App, payload: Record<string, unknown>) =>
  on.inject({ method: 'POST', url: `/v1/ecr/${account}/repositories/grp`, headers: auth, payload });
/** The groups besides the own one that the repository's policy names, or undefined without a policy. */
const policyGroups = async (repositoryName: string) => {
  try {
    const { policyText } = await ecr.send(new GetRepositoryPolicyCommand({ repositoryName }));
    return (JSON.parse(policyText!).Statement[0].Condition.StringEqualsIgnoreCase['aws:PrincipalTag/spinup:spaceid'] as string[]).slice(1);
  } catch (err) {
    if ((err as Error).name === 'RepositoryPolicyNotFoundException' || (err as Error).name === 'RepositoryNotFoundException')
      return undefined;
    throw err;
  }
};
/** A first request, then a second one `afterMs` later, both answered. */
const race = async <A, B>(first: () => Promise<A>, afterMs: number, second: () => Promise<B>): Promise<[A, B]> => {
  const a = first();
  await sleep(afterMs);
  return Promise.all([a, second()]);
};

describe('a create whose SetRepositoryPolicy is slow and then fails, and a second identical create meanwhile', () => {
  const failSlowly = () =>
    proxy.fail('SetRepositoryPolicy', { code: 'InvalidParameterException', message: 'injected failure', times: 1, delayMs: 1000 });

  it('on one replica: the second waits for the first, which rolls back, and creates the repository it answers', async () => {
    failSlowly();
    const [a, b] = await race(
      () => create(app, { RepositoryName: 'lost1' }),
      300,
      () => create(app, { RepositoryName: 'lost1' }),
    );
    // Before: B completed A's repository (200), then A's rollback deleted it: B's 200 named nothing.
    expect(a.statusCode).toBe(400);
    expect(a.json().detail).toMatch(
      /Could not set the repository policy of grp\/lost1; nothing was changed \(rolled back: create the repository grp\/lost1\)\.$/,
    );
    expect(b.statusCode).toBe(200);
    expect(await repositoryExists(ecr, 'grp/lost1')).toBe(true);
    expect(await policyGroups('grp/lost1')).toEqual([]);
  });

  it('on two replicas: the second is a 409 to retry, never a 200 for the repository the first then deletes', async () => {
    // The first create's SetRepositoryPolicy is held until the second create has its answer, then
    // fails: the second finds the repository without its policy whatever the machine's load.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    proxy.fail('SetRepositoryPolicy', { code: 'InvalidParameterException', message: 'injected failure', times: 1, until: held });
    const started = Date.now();
    const first = create(app, { RepositoryName: 'lost2' });
    while (proxy.count('SetRepositoryPolicy') < 1) await sleep(5);
    const b = await create(other, { RepositoryName: 'lost2' });
    const secondS = (Date.now() - started) / 1000;
    release();
    const a = await first;
    expect(a.statusCode).toBe(400);
    expect(a.json().detail).toMatch(/nothing was changed \(rolled back: create the repository grp\/lost2\)\.$/);
    expect(b.statusCode).toBe(409);
    expect(b.json().detail).toMatch(
      /^The repository grp\/lost2 already exists, without its pull policy yet, created \d+ s ago: the create that made it may still be under way\. Retry in (\d+) s: /,
    );
    // The AWS deadline (25 s) and 2 s of clock slack from its creation, less the time since (and a
    // second for a creation date in whole seconds).
    expect(Number(b.headers['retry-after'])).toBeGreaterThanOrEqual(27 - Math.ceil(secondS) - 1);
    expect(Number(b.headers['retry-after'])).toBeLessThanOrEqual(27);
    expect(await repositoryExists(ecr, 'grp/lost2')).toBe(false);
    // Nothing is left in the way: the retry creates it.
    expect((await create(other, { RepositoryName: 'lost2' })).statusCode).toBe(200);
  });
});

describe('two creates of one repository differing in Groups, SetRepositoryPolicy slowed', () => {
  it.each([
    ['one replica', () => app],
    ['two replicas', () => other],
  ])('on %s: the first answers 200 with its Groups, which ECR holds, and the second 409', async (_, second) => {
    const name = `groups-${second() === app ? 'one' : 'two'}`;
    proxy.delay('SetRepositoryPolicy', 800);
    const [a, b] = await race(
      () => create(app, { RepositoryName: name, Groups: ['g1'] }),
      200,
      () => create(second(), { RepositoryName: name, Groups: ['g2'] }),
    );
    // Before: both 200, each with its own Groups; ECR held the last policy set (g1 or g2), so one 200 was false.
    expect(a.statusCode).toBe(200);
    expect(a.json().Groups).toEqual(['g1']);
    expect(b.statusCode).toBe(409);
    expect(await policyGroups(`grp/${name}`)).toEqual(['g1']);
    expect(proxy.count('SetRepositoryPolicy')).toBe(1);
  });
});

describe('two identical creates at once, AWS at full speed', () => {
  it('on one replica: one 200, the other 409 as with the original (CreateRepository: already exists)', async () => {
    for (let i = 0; i < 4; i++) {
      const name = `twin${i}`;
      const answers = await Promise.all([create(app, { RepositoryName: name }), create(app, { RepositoryName: name })]);
      expect(answers.map((r) => r.statusCode).sort()).toEqual([200, 409]);
      expect(await policyGroups(`grp/${name}`)).toEqual([]);
    }
  });
});

describe('a create whose SetRepositoryPolicy is slow and then fails, and an update setting Groups meanwhile on another replica', () => {
  it('keeps the repository the update answered, and says so', async () => {
    proxy.fail('SetRepositoryPolicy', { code: 'InvalidParameterException', message: 'injected failure', times: 1, delayMs: 1000 });
    const [a, put] = await race(
      () => create(app, { RepositoryName: 'updated' }),
      300,
      () => other.inject({ method: 'PUT', url: `/v1/ecr/${account}/repositories/grp/updated`, headers: auth, payload: { Groups: ['g3'] } }),
    );
    expect(put.statusCode).toBe(200);
    expect(put.json().Groups).toEqual(['g3']);
    // Before: the create's rollback deleted the repository the update had just answered.
    expect(a.statusCode).toBe(400);
    expect(a.json().detail).toMatch(
      /Could not set the repository policy of grp\/updated\. STILL APPLIED: create the repository grp\/updated \(not rolled back: it has a pull policy now, set by another request\)\.$/,
    );
    expect(await repositoryExists(ecr, 'grp/updated')).toBe(true);
    expect(await policyGroups('grp/updated')).toEqual(['g3']);
  });
});

describe('a create of a repository that another replica is deleting', () => {
  it.each([
    ['its policy is read', 'GetRepositoryPolicy', 'policy'],
    ['its ownership is checked', 'DescribeRepositories', 'owner'],
  ])('gone by the time %s: a 409 that says to retry, and the retry creates it', async (_, held, suffix) => {
    const name = `deleting-${suffix}`;
    const url = `/v1/ecr/${account}/repositories/grp/${name}`;
    expect((await create(app, { RepositoryName: name })).statusCode).toBe(200);
    const repositoryGone = proxy.hold('DeleteRepository');
    const deleting = app.inject({ method: 'DELETE', url, headers: auth });
    await repositoryGone.arrived;
    // The create's CreateRepository meets "already exists"; its next read comes after DeleteRepository.
    const read = proxy.hold(held);
    const creating = create(other, { RepositoryName: name });
    await Promise.race([read.arrived, creating]);
    repositoryGone.release();
    expect((await deleting).statusCode).toBe(200);
    read.release();
    const created = await creating;
    // Before: a 404 (the policy's read), or the 409 "already exists" without Retry-After (the ownership check).
    expect(created.statusCode).toBe(409);
    expect(created.headers['retry-after']).toBe('1');
    expect(created.json().detail).toBe(
      `The repository grp/${name} existed when this request created it, and is gone now: it was being deleted. Nothing was changed; retry in 1 s to create it.`,
    );
    expect(await repositoryExists(ecr, `grp/${name}`)).toBe(false);
    expect((await create(other, { RepositoryName: name })).statusCode).toBe(200);
  });
});
