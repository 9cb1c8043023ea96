import {
  AddUserToGroupCommand,
  CreateAccessKeyCommand,
  CreateUserCommand,
  GetUserCommand,
  paginateListUsers,
  type IAMClient,
} from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auth, motoEndpoint, newAccount, testApp } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';
import { FaultProxy, type Gate } from '../support/fault-proxy.js';

/**
 * A repository's DELETE racing the create of one of its users. The delete lists the repository's
 * users, deletes them, then the repository; a create whose CreateUser lands after that listing
 * used to answer 200 and leave its IAM user behind, at the repository's path and in the admin
 * group, for a new repository of the same name to inherit. The proxy in front of moto holds
 * chosen calls of one request until the other has got somewhere, so each ordering is met every
 * time. `app` and `other` are two replicas: separate processes' worth of state (locks) over the
 * same AWS. Whatever the ordering, no user may remain, and a create answered 200 must be named in
 * the delete's `Users` (it deleted it).
 */
const ORG = 'spindev';
let proxy: FaultProxy;
let app: App;
let other: App;
/** A third replica whose log lines are kept. */
let logged: App;
const logLines: string[] = [];
let account: string;
let iam: IAMClient;

beforeAll(async () => {
  proxy = await new FaultProxy(motoEndpoint()).start();
  app = await testApp({ org: ORG, aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
  other = await testApp({ org: ORG, aws: { endpoint: proxy.endpoint, maxAttempts: 1 } });
  logged = await testApp({
    org: ORG,
    aws: { endpoint: proxy.endpoint, maxAttempts: 1 },
    logStream: { write: (l) => void logLines.push(l) },
  });
  account = newAccount();
  iam = await directIam(account);
  // The org's policy and group, made once, so that each race's create is the plain one.
  await newRepository('setup');
  expect((await createUser(app, 'setup')).statusCode).toBe(200);
});
afterAll(async () => {
  proxy?.clear();
  await app?.close();
  await other?.close();
  await logged?.close();
  await proxy?.stop();
});
beforeEach(() => proxy.clear());

const repositoryUrl = (name: string) => `/v1/ecr/${account}/repositories/grp/${name}`;
const createUser = (on: App, name: string, UserName = 'ci') =>
  on.inject({ method: 'POST', url: `${repositoryUrl(name)}/users`, headers: auth, payload: { UserName } });
/** The repository's users as the API lists them. */
const listUsers = async (name: string) => (await app.inject({ url: `${repositoryUrl(name)}/users`, headers: auth })).json<string[]>();
const deleteRepository = (name: string) => app.inject({ method: 'DELETE', url: repositoryUrl(name), headers: auth });
const createRepository = (name: string, on: App = app) =>
  on.inject({ method: 'POST', url: `/v1/ecr/${account}/repositories/grp`, headers: auth, payload: { RepositoryName: name } });
async function newRepository(name: string, on: App = app) {
  expect((await createRepository(name, on)).statusCode).toBe(200);
}
/** Until the gate's call is held at the proxy, or `request` is answered without it (the code before the fix). */
const until = (gate: Gate, request: Promise<unknown>) => Promise.race([gate.arrived, request.then(() => undefined)]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The IAM users at the repository's path, read straight from moto. */
async function usersAtPath(name: string): Promise<string[]> {
  const Path = `/spinup/${ORG}/grp/${name}/`;
  const names: string[] = [];
  for await (const page of paginateListUsers({ client: iam }, { PathPrefix: Path })) {
    for (const u of page.Users ?? []) if (u.Path === Path) names.push(u.UserName!);
  }
  return names;
}

/**
 * What must hold after the race, whatever its order: the repository is deleted, IAM holds no user
 * of it, a create answered 200 is one the delete names as deleted, and a new repository of the
 * same name has no users.
 */
async function expectNoUserLeft(name: string, created: LightMyRequestResponse, deleted: LightMyRequestResponse) {
  expect(deleted.statusCode).toBe(200);
  expect(await usersAtPath(name)).toEqual([]);
  await expect(iam.send(new GetUserCommand({ UserName: `${name}-ci` }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });
  if (created.statusCode === 200) expect(deleted.json().Users).toEqual(['ci']);
  else expect(created.statusCode).toBe(404);
  await newRepository(name);
  expect(await listUsers(name)).toEqual([]);
}

const replicas = [
  ['one replica', 'one', () => app],
  ['two replicas', 'two', () => other],
] as const;

describe.each(replicas)('a repository DELETE and a user create, on %s', (_, tag, creator) => {
  it('the create answered 200 before DeleteRepository: the delete deletes that user after the repository, and names it', async () => {
    const name = `${tag}-before`;
    await newRepository(name);
    const repositoryGone = proxy.hold('DeleteRepository');
    const deleting = deleteRepository(name);
    // The delete has listed the users (none yet) and deleted them.
    await until(repositoryGone, deleting);
    const created = await createUser(creator(), name);
    expect(created.statusCode).toBe(200);
    repositoryGone.release();
    const deleted = await deleting;
    // Before: 200 with Users [], and app-ci stayed in the admin group at the deleted repository's path.
    expect(deleted.json().Users).toEqual(['ci']);
    await expectNoUserLeft(name, created, deleted);
  });

  it('CreateUser before DeleteRepository, the create finishing after it: the create rolls itself back, 404', async () => {
    const name = `${tag}-across`;
    await newRepository(name);
    const repositoryGone = proxy.hold('DeleteRepository');
    const addedToGroup = proxy.hold('AddUserToGroup');
    // The delete's second listing of the users, after DeleteRepository.
    const listedAgain = proxy.hold('ListUsers', { skip: 1 });
    const deleting = deleteRepository(name);
    await until(repositoryGone, deleting);
    const creating = createUser(creator(), name);
    // CreateUser is done, after the delete listed the users.
    await until(addedToGroup, creating);
    repositoryGone.release();
    // DeleteRepository is done.
    await until(listedAgain, deleting);
    addedToGroup.release();
    const created = await creating;
    // Before: 200, for a user of a repository deleted meanwhile, which stayed.
    expect(created.statusCode).toBe(404);
    expect(created.json().detail).toBe(
      `Repository grp/${name} was deleted while its user ci was being created. Could not find the repository grp/${name} still there; nothing was changed (rolled back: add ${name}-ci to the group SpinupECRAdminGroup-${ORG}; create the IAM user ${name}-ci).`,
    );
    listedAgain.release();
    const deleted = await deleting;
    expect(deleted.json().Users).toEqual([]);
    await expectNoUserLeft(name, created, deleted);
  });

  it('the create checked the repository before the delete began and made its user after the delete answered: 404, rolled back', async () => {
    const name = `${tag}-after`;
    await newRepository(name);
    const userCreated = proxy.hold('CreateUser');
    const creating = createUser(creator(), name);
    await until(userCreated, creating);
    const deleted = await deleteRepository(name);
    expect(deleted.json().Users).toEqual([]);
    userCreated.release();
    const created = await creating;
    // Before: 200, for a user of a repository already deleted, which stayed.
    expect(created.statusCode).toBe(404);
    expect(created.json().detail).toMatch(new RegExp(`^Repository grp/${name} was deleted while its user ci was being created\\. `));
    await expectNoUserLeft(name, created, deleted);
  });

  it('sent 5 ms apart at full speed, as the audit did, five rounds: never a user left', async () => {
    for (let round = 0; round < 5; round++) {
      const name = `${tag}-fast${round}`;
      await newRepository(name);
      const deleting = deleteRepository(name);
      await sleep(5);
      const created = await createUser(creator(), name);
      await expectNoUserLeft(name, created, await deleting);
    }
  });
});

describe('a user created while its repository was being deleted that the delete then cannot delete', () => {
  it('answers that the repository was deleted, and which IAM user is left to delete by hand', async () => {
    const name = 'stuck';
    await newRepository(name);
    const repositoryGone = proxy.hold('DeleteRepository');
    const deleting = deleteRepository(name);
    await until(repositoryGone, deleting);
    expect((await createUser(app, name)).statusCode).toBe(200);
    proxy.fail('DeleteUser', { code: 'Throttling', message: 'Rate exceeded', times: 1 });
    repositoryGone.release();
    const deleted = await deleting;
    expect(deleted.statusCode).toBe(429);
    // A retried DELETE is a 404 now: no Retry-After that would suggest it.
    expect(deleted.headers['retry-after']).toBeUndefined();
    expect(deleted.json().detail).toBe(
      `The repository grp/${name} was deleted, but the IAM user ${name}-ci found at its path (/spinup/${ORG}/grp/${name}/) after that could not be deleted. It was created while the repository was being deleted, or it is a user of a repository grp/${name} created again since (on another replica): check GET ${repositoryUrl(name)}/users first. If that does not list it, the user routes no longer reach it: creating the repository grp/${name} again deletes it first, or delete that IAM user by hand. AWS is throttling requests; retry later. Could not delete the IAM user ${name}-ci. STILL APPLIED: remove ${name}-ci from the group SpinupECRAdminGroup-${ORG}.`,
    );
    expect(await usersAtPath(name)).toEqual([`${name}-ci`]);
    // As the answer says: a new repository of that name deletes it first.
    proxy.clear();
    await newRepository(name);
    expect(await usersAtPath(name)).toEqual([]);
  });
});

describe('a user of the repository created again, which the old delete then cannot delete', () => {
  it("is not said to be the deleted repository's: the answer says to check GET .../users first", async () => {
    const name = 'again';
    await newRepository(name);
    const listedAgain = proxy.hold('ListUsers', { skip: 1 });
    const deleting = deleteRepository(name);
    await until(listedAgain, deleting);
    await newRepository(name, other);
    expect((await createUser(other, name, 'new')).statusCode).toBe(200);
    proxy.fail('DeleteUser', { code: 'DeleteConflict', status: 409, times: 1 });
    listedAgain.release();
    const deleted = await deleting;
    expect(deleted.statusCode).toBe(409);
    // Before: "... created while it was being deleted, could not be: delete that IAM user by hand (the
    // user routes no longer reach it)", of a user the new repository lists and uses.
    expect(deleted.json().detail).toMatch(
      new RegExp(
        `^The repository grp/${name} was deleted, but the IAM user ${name}-new found at its path \\(/spinup/${ORG}/grp/${name}/\\) after that could not be deleted\\. It was created while the repository was being deleted, or it is a user of a repository grp/${name} created again since \\(on another replica\\): check GET ${repositoryUrl(name)}/users first\\. `,
      ),
    );
    proxy.clear();
    expect(await listUsers(name)).toEqual(['new']);
  });
});

describe('a user a deleted repository left behind is not inherited by a new repository of that name', () => {
  const GROUP = `SpinupECRAdminGroup-${ORG}`;
  const path = (name: string) => `/spinup/${ORG}/grp/${name}/`;

  it.each([
    [
      'RemoveUserFromGroup',
      `add {u} to the group ${GROUP} (rolling it back failed: ServiceFailureException); create the IAM user {u} (not rolled back: it is still in the group ${GROUP}, as removing it failed)`,
    ],
    ['DeleteUser', `create the IAM user {u} (rolling it back failed: ServiceFailureException); rolled back: add {u} to the group ${GROUP}`],
  ])(
    'a create that finds its repository deleted and whose rollback fails at %s names the IAM user left, and the next create of the repository deletes it',
    async (failing, still) => {
      const name = `rb-${failing.toLowerCase()}`;
      const u = `${name}-ci`;
      await newRepository(name);
      const userCreated = proxy.hold('CreateUser');
      const creating = createUser(app, name);
      await until(userCreated, creating);
      expect((await deleteRepository(name)).statusCode).toBe(200);
      proxy.fail(failing, { code: 'ServiceFailure', status: 500, times: 1 });
      userCreated.release();
      const created = await creating;
      expect(created.statusCode).toBe(404);
      // Before: "... (not rolled back: it is in the group ..., added by another request)", and nothing
      // said that the user stays where no route reaches it.
      expect(created.json().detail).toBe(
        `Repository grp/${name} was deleted while its user ci was being created. Could not find the repository grp/${name} still there. STILL APPLIED: ${still.replaceAll('{u}', u)}. The IAM user ${u} (path ${path(name)}) remains, and the user routes no longer reach it: creating the repository grp/${name} again deletes it first, or delete that IAM user by hand.`,
      );
      expect(await usersAtPath(name)).toEqual([u]);
      proxy.clear();
      // Before: the new repository listed the user and was open to it.
      await newRepository(name, logged);
      expect(await usersAtPath(name)).toEqual([]);
      expect(await listUsers(name)).toEqual([]);
      const line = logLines.map((l) => JSON.parse(l) as { msg: string; users?: string[] }).find((l) => l.users?.includes(u));
      expect(line?.msg).toBe(`deleted the IAM users ${u}, left at the path of a deleted repository grp/${name}, before creating it again`);
    },
  );

  it('a DELETE whose DeleteRepository took effect unanswered, and whose read-back failed, deletes a user created meanwhile and says so', async () => {
    const name = 'unanswered';
    await newRepository(name);
    const repositoryGone = proxy.hold('DeleteRepository');
    const deleting = deleteRepository(name);
    await until(repositoryGone, deleting);
    expect((await createUser(other, name)).statusCode).toBe(200);
    proxy.fail('DeleteRepository', { code: 'ServerException', status: 500, applied: true, times: 1 });
    proxy.fail('DescribeRepositories', { code: 'ServerException', status: 500 });
    repositoryGone.release();
    const deleted = await deleting;
    expect(deleted.statusCode).toBeGreaterThanOrEqual(500);
    // Before: "... STILL APPLIED: perhaps: delete the repository ...", and the user stayed at the
    // deleted repository's path, in the group, with a retried DELETE a 404.
    expect(deleted.json().detail).toMatch(
      new RegExp(
        `STILL APPLIED: perhaps: delete the repository grp/${name}\\. In case it was deleted, its IAM users were listed again: ci, created meanwhile, deleted too\\.$`,
      ),
    );
    proxy.clear();
    expect(await usersAtPath(name)).toEqual([]);
  });

  it("the original service's leftover (a user in the group, with a key, at a deleted repository's path) is deleted by the create", async () => {
    const name = 'leftover';
    const u = `${name}-ci`;
    await iam.send(new CreateUserCommand({ UserName: u, Path: path(name) }));
    await iam.send(new AddUserToGroupCommand({ UserName: u, GroupName: GROUP }));
    await iam.send(new CreateAccessKeyCommand({ UserName: u }));
    await newRepository(name);
    expect(await usersAtPath(name)).toEqual([]);
    expect(await listUsers(name)).toEqual([]);
  });

  it("a create of a repository that exists leaves that repository's users alone", async () => {
    const name = 'exists';
    await newRepository(name);
    expect((await createUser(app, name)).statusCode).toBe(200);
    expect((await createRepository(name)).statusCode).toBe(409);
    expect(await usersAtPath(name)).toEqual([`${name}-ci`]);
  });

  it('a leftover user that cannot be deleted fails the create, which creates nothing and names the user', async () => {
    const name = 'stuckleftover';
    const u = `${name}-ci`;
    await iam.send(new CreateUserCommand({ UserName: u, Path: path(name) }));
    proxy.fail('DeleteUser', { code: 'ServiceFailure', status: 500, times: 1 });
    const res = await createRepository(name);
    expect(res.statusCode).toBeGreaterThanOrEqual(500);
    expect(res.json().detail).toMatch(
      new RegExp(
        `^Could not delete the IAM user ${u} \\(path ${path(name)}\\), left by a deleted repository of that name \\(a new repository would be open to it\\), so the repository grp/${name} was not created\\. `,
      ),
    );
    expect((await app.inject({ url: repositoryUrl(name), headers: auth })).statusCode).toBe(404);
    proxy.fail('ListUsers', { code: 'ServiceFailure', status: 500, times: 1 });
    const listing = await createRepository(name);
    expect(listing.json().detail).toMatch(
      /^Could not check for IAM users left at the path .* so the repository grp\/stuckleftover was not created \(nothing was changed\)\. /,
    );
    expect((await app.inject({ url: repositoryUrl(name), headers: auth })).statusCode).toBe(404);
    proxy.clear();
    await newRepository(name);
    expect(await usersAtPath(name)).toEqual([]);
  });
});
