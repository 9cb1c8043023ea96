import { GetUserCommand, ListAccessKeysCommand, ListGroupsForUserCommand, type IAMClient } from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auth, motoEndpoint, newAccount, testApp, createGrpApp } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';
import { FaultProxy } from '../support/fault-proxy.js';

/**
 * Creates of one repository user racing each other, and a create racing a key reset, with IAM
 * slowed by a proxy in front of moto. Whatever the interleaving, an answer 200 must be what IAM
 * holds afterwards, and nothing answered 200 is deleted by another request's rollback. `app` and
 * `other` are two replicas: separate processes' worth of state (locks) over the same AWS.
 */
const ORG = 'spindev';
const GROUP = `SpinupECRAdminGroup-${ORG}`;
let proxy: FaultProxy;
let app: App;
let other: App;
let account: string;
let iam: IAMClient;

beforeAll(async () => {
  proxy = await new FaultProxy(motoEndpoint()).start();
  app = await testApp({ org: ORG, aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
  other = await testApp({ org: ORG, aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
  account = newAccount();
  iam = await directIam(account);
  await createGrpApp(app, account);
});
afterAll(async () => {
  await app?.close();
  await other?.close();
  await proxy?.stop();
});
beforeEach(() => proxy.clear());

const url = (path = '') => `/v1/ecr/${account}/repositories/grp/app/users${path}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const create = (on: App, UserName: string, Tags?: { Key: string; Value: string }[]) =>
  on.inject({ method: 'POST', url: url(), headers: auth, payload: { UserName, ...(Tags ? { Tags } : {}) } });
const resetKey = (on: App, user: string) => on.inject({ method: 'PUT', url: url(`/${user}`), headers: auth, payload: { ResetKey: true } });
/** A first request, then a second one `afterMs` later, both answered. */
const race = async <A, B>(first: () => Promise<A>, afterMs: number, second: () => Promise<B>): Promise<[A, B]> => {
  const a = first();
  await sleep(afterMs);
  return Promise.all([a, second()]);
};
/** What IAM holds of `app-{user}`, read straight from moto: undefined when there is no such user. */
const held = async (user: string) => {
  const UserName = `app-${user}`;
  try {
    const { User } = await iam.send(new GetUserCommand({ UserName }));
    const groups = (await iam.send(new ListGroupsForUserCommand({ UserName }))).Groups ?? [];
    const keys = (await iam.send(new ListAccessKeysCommand({ UserName }))).AccessKeyMetadata ?? [];
    return { tags: User?.Tags ?? [], groups: groups.map((g) => g.GroupName), keys: keys.map((k) => k.AccessKeyId) };
  } catch (err) {
    if ((err as Error).name === 'NoSuchEntityException') return undefined;
    throw err;
  }
};
const failSlowly = () =>
  proxy.fail('AddUserToGroup', { code: 'LimitExceeded', status: 409, message: 'injected failure', times: 1, delayMs: 1000 });

describe('a create whose AddUserToGroup is slow and then fails, and a second identical create meanwhile', () => {
  it('on one replica: the second waits for the first, which rolls back, and creates the user it answers', async () => {
    failSlowly();
    const [a, b] = await race(
      () => create(app, 'lost1'),
      300,
      () => create(app, 'lost1'),
    );
    // Before: B completed A's half-made user (200), then A's rollback deleted it: B's 200 named nothing.
    expect(a.statusCode).toBe(429);
    expect(a.json().detail).toMatch(
      /Could not add app-lost1 to the group .*; nothing was changed \(rolled back: create the IAM user app-lost1\)\.$/,
    );
    expect(b.statusCode).toBe(200);
    expect(await held('lost1')).toMatchObject({ groups: [GROUP], keys: [] });
  });

  it('on two replicas: the second is a 409 to retry, never a 200 for the user the first then deletes', async () => {
    // The first create's AddUserToGroup is held until the second create has its answer, then
    // fails: the second finds the user in no group whatever the machine's load.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    proxy.fail('AddUserToGroup', { code: 'LimitExceeded', status: 409, message: 'injected failure', times: 1, until: released });
    const started = Date.now();
    const first = create(app, 'lost2');
    while (proxy.count('AddUserToGroup') < 1) await sleep(5);
    const b = await create(other, 'lost2');
    const secondS = (Date.now() - started) / 1000;
    release();
    const a = await first;
    expect(a.statusCode).toBe(429);
    expect(a.json().detail).toMatch(/nothing was changed \(rolled back: create the IAM user app-lost2\)\.$/);
    expect(b.statusCode).toBe(409);
    expect(b.json().detail).toMatch(
      /^The user lost2 of grp\/app already exists \(IAM user app-lost2\), in no group yet, created \d+ s ago: the create that made it may still be under way\. Retry in (\d+) s: /,
    );
    // The AWS deadline (25 s) and 2 s of clock slack from its creation, less the time since (and a
    // second for a creation date in whole seconds).
    expect(Number(b.headers['retry-after'])).toBeGreaterThanOrEqual(27 - Math.ceil(secondS) - 1);
    expect(Number(b.headers['retry-after'])).toBeLessThanOrEqual(27);
    expect(await held('lost2')).toBeUndefined();
    // Nothing is left in the way: the retry creates it.
    expect((await create(other, 'lost2')).statusCode).toBe(200);
    expect(await held('lost2')).toMatchObject({ groups: [GROUP] });
  });
});

describe('two creates of one user differing in Tags, AddUserToGroup slowed', () => {
  it.each([
    ['one replica', 'tags-one', () => app],
    ['two replicas', 'tags-two', () => other],
  ])('on %s: the first answers 200 with its tags, which IAM holds, and the second 409', async (_, user, second) => {
    proxy.delay('AddUserToGroup', 800);
    const [a, b] = await race(
      () => create(app, user, [{ Key: 'team', Value: 'a' }]),
      200,
      () => create(second(), user, [{ Key: 'team', Value: 'b' }]),
    );
    // Before: both 200, the second merging its tag over the first's: the first's answer was not what IAM held.
    expect(a.statusCode).toBe(200);
    expect(a.json().Tags).toContainEqual({ Key: 'team', Value: 'a' });
    expect(b.statusCode).toBe(409);
    expect((await held(user))?.tags).toContainEqual({ Key: 'team', Value: 'a' });
    expect((await held(user))?.groups).toEqual([GROUP]);
    expect(proxy.count('AddUserToGroup')).toBe(1);
    expect(proxy.count('TagUser')).toBe(0);
  });
});

describe('two identical creates at once, IAM at full speed', () => {
  it('on one replica: one 200, the other 409 as with the original (CreateUser: already exists)', async () => {
    for (let i = 0; i < 4; i++) {
      const user = `twin${i}`;
      const answers = await Promise.all([create(app, user), create(app, user)]);
      expect(answers.map((r) => r.statusCode).sort()).toEqual([200, 409]);
      expect(answers.find((r) => r.statusCode === 409)!.json().detail).toBe(
        `The user ${user} of grp/app already exists (IAM user app-${user}): GET /v1/ecr/${account}/repositories/grp/app/users/${user} shows it, PUT with ResetKey issues its access key.`,
      );
      expect(await held(user)).toMatchObject({ groups: [GROUP], keys: [] });
    }
  });
});

describe('two key resets of one user at once', () => {
  it('on one replica: run one after the other, so the user keeps one key, the one the last answer handed out', async () => {
    expect((await create(app, 'keys')).statusCode).toBe(200);
    proxy.delay('CreateAccessKey', 500);
    const [a, b] = await race(
      () => resetKey(app, 'keys'),
      100,
      () => resetKey(app, 'keys'),
    );
    expect(a.statusCode).toBe(200);
    expect(b.statusCode).toBe(200);
    // Before: both read no old key, each created one and deleted none: two working keys, two secrets handed out.
    expect(a.json().DeletedAccessKeys).toEqual([]);
    expect(b.json().DeletedAccessKeys).toEqual([a.json().AccessKey.AccessKeyId]);
    expect((await held('keys'))?.keys).toEqual([b.json().AccessKey.AccessKeyId]);
  });
});

describe('a create whose AddUserToGroup is slow and then fails, and a key reset meanwhile on another replica', () => {
  it('keeps the user whose key the reset answered, and says so', async () => {
    failSlowly();
    const [a, put] = await race(
      () => create(app, 'keyed'),
      300,
      () => resetKey(other, 'keyed'),
    );
    expect(put.statusCode).toBe(200);
    const key = put.json().AccessKey.AccessKeyId;
    // Before: the create's rollback deleted the user, and with it the key the reset had just answered.
    expect(a.statusCode).toBe(429);
    expect(a.json().detail).toMatch(
      /Could not add app-keyed to the group .*\. STILL APPLIED: create the IAM user app-keyed \(not rolled back: it has an access key now, issued by another request\)\.$/,
    );
    expect(await held('keyed')).toMatchObject({ groups: [], keys: [key] });
  });
});
