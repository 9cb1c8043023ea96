import {
  AddUserToGroupCommand,
  CreateAccessKeyCommand,
  CreateUserCommand,
  DeleteAccessKeyCommand,
  DeleteUserCommand,
  GetUserCommand,
  paginateListAccessKeys,
  paginateListGroupsForUser,
  paginateListUsers,
  RemoveUserFromGroupCommand,
  TagUserCommand,
  UntagUserCommand,
  type AccessKeyMetadata,
  type IAMClient,
  type User as IamUser,
} from '@aws-sdk/client-iam';
import type { ECRClient } from '@aws-sdk/client-ecr';
import { badRequest, HttpProblem } from '@platform/http-common';
import { MAX_TAGS, type Tag } from '../schemas/common.js';
import { MAX_IAM_USER_NAME, type DeletedUser, type UpdatedUser, type User } from '../schemas/user.js';
import { stillCreating } from './create-window.js';
import type { AccountSessions } from './credentials.js';
import { currentDeadline } from './deadline.js';
import { classifyAwsError } from './errors.js';
import { KeyedLock } from './keyed-lock.js';
import { GROUP_TAG, NAME_TAG, ORG_TAG, type Ownership } from './ownership.js';
import { rfc3339 } from './repositories.js';
import { applySteps, UndoDeclined, type Step } from './steps.js';
import { CLOCK_SLACK_MS, ifThere, mayHaveTakenEffect, unlessGone } from './unanswered.js';
import { ADMIN_GROUP, RESOURCE_NAME_TAG, UserAccess } from './user-access.js';

/**
 * IAM user tag keys are case-insensitive (case preserved): `resourcename` is the `ResourceName`
 * tag, and a user cannot carry both `env` and `Env`. Keys are compared by this.
 */
const keyOf = (key: string) => key.toLowerCase();
const RESERVED = new Set([NAME_TAG, RESOURCE_NAME_TAG, ORG_TAG, GROUP_TAG].map(keyOf));

/**
 * The caller's tags without the service's keys, in any case, one per key (the last wins); a key
 * that differs from one of `current` only in case is spelled as that one, so that it updates it.
 */
function callerTags(tags: Tag[], current: Tag[] = []): Tag[] {
  const spelling = new Map(current.map((t) => [keyOf(t.Key), t.Key]));
  const byKey = new Map<string, Tag>();
  for (const t of tags) {
    const k = keyOf(t.Key);
    if (!RESERVED.has(k)) byKey.set(k, { Key: spelling.get(k) ?? t.Key, Value: t.Value });
  }
  return [...byKey.values()];
}

const toTags = (tags: { Key?: string; Value?: string }[] | undefined): Tag[] =>
  (tags ?? []).map((t) => ({ Key: t.Key ?? '', Value: t.Value ?? '' }));

const sameTags = (a: Tag[], b: Tag[]) => a.length === b.length && b.every((t) => a.some((u) => u.Key === t.Key && u.Value === t.Value));

function checkTagCount(count: number): void {
  if (count > MAX_TAGS) {
    throw badRequest(`An IAM user holds at most ${MAX_TAGS} tags, the service's four included; this would make ${count}.`, [
      { field: 'body.Tags', message: `makes ${count} tags on the user, more than ${MAX_TAGS} (4 of them are the service's)` },
    ]);
  }
}

/** `current` with `changes` set (keys spelled as in `current`), within IAM's limit of tags per user. */
function mergeTags(current: Tag[], changes: Tag[]): Tag[] {
  const merged = new Map(current.map((t) => [t.Key, t.Value]));
  for (const t of changes) merged.set(t.Key, t.Value);
  checkTagCount(merged.size);
  return [...merged].map(([Key, Value]) => ({ Key, Value }));
}

const keyMeta = (k: AccessKeyMetadata) => ({
  AccessKeyId: k.AccessKeyId ?? '',
  CreateDate: rfc3339(k.CreateDate) ?? '',
  Status: k.Status ?? '',
  UserName: k.UserName ?? '',
});

/** TagUser of `changes` (keys spelled as in `current`); its undo removes added keys and restores overwritten values. */
function tagStep(iam: IAMClient, UserName: string, current: Tag[], changes: Tag[]): Step {
  const previous = new Map(current.map((t) => [t.Key, t.Value]));
  const added = changes.filter((t) => !previous.has(t.Key)).map((t) => t.Key);
  const overwritten = changes.filter((t) => previous.has(t.Key)).map((t) => ({ Key: t.Key, Value: previous.get(t.Key)! }));
  return {
    what: `merge the tags of ${UserName}`,
    apply: async () => void (await iam.send(new TagUserCommand({ UserName, Tags: changes }))),
    // A user deleted meanwhile (its repository's delete) has no tags left to restore.
    undo: async () => {
      if (added.length) await unlessGone('NoSuchEntityException', iam.send(new UntagUserCommand({ UserName, TagKeys: added })));
      if (overwritten.length) await unlessGone('NoSuchEntityException', iam.send(new TagUserCommand({ UserName, Tags: overwritten })));
    },
  };
}

/** Re-throws `err` as its HTTP problem with `detail` in front of what AWS said. */
function explain(err: unknown, detail: string): HttpProblem {
  const problem = classifyAwsError(err) ?? new HttpProblem(500, 'An internal error occurred.', { cause: err });
  return new HttpProblem(problem.statusCode, `${detail} ${problem.message}`, { headers: problem.headers, cause: err });
}

/**
 * Repository users: an IAM user per repository and user, `{name}-{user}` at the path
 * `/spinup/{org}/{group}/{name}/`, tagged so that the org's shared policy (user-access.ts) lets it
 * push and pull that repository only, the way CI pushes without OIDC. Every route first checks that
 * the repository is this org's and group's, and a user outside the repository's path is the same
 * 404 as a missing one.
 */
export class RepositoryUsers {
  private readonly access: UserAccess;
  /** This process's creates, updates and deletes, one at a time per account and IAM user. */
  private readonly changes = new KeyedLock();

  constructor(
    private readonly sessions: AccountSessions,
    private readonly ownership: Ownership,
    /** The IAM partition of the service's region (aws, aws-cn, ...), for policy ARNs. */
    partition: string,
    /**
     * How long after its CreateUser a user in no group may still be its create's to finish, on
     * this replica or another: the AWS deadline (no create runs longer) and CREATE_CLOCK_SLACK_MS.
     */
    private readonly creatingMs: number,
  ) {
    this.access = new UserAccess(ownership.org, partition);
  }

  /**
   * `fn` once this process's earlier changes of the IAM user are done: two requests changing one
   * user do not interleave their calls (a create completing another's half-made user, which that
   * one's rollback then deletes; two key resets each keeping its own key). Keyed by the IAM name,
   * which is what IAM holds once per account: `ci` of `g1/app` and of `g2/app` are one `app-ci`.
   * Waiting counts against the request's deadline.
   */
  private oneAtATime<T>(account: string, UserName: string, fn: () => Promise<T>): Promise<T> {
    return this.changes.run(`${account}/${UserName}`, fn, (turn) => currentDeadline()?.race(turn) ?? turn);
  }

  private path(group: string, name: string): string {
    return `/spinup/${this.ownership.org}/${group}/${name}/`;
  }

  /** `{name}-{user}`; `field` names where the user came from (the body on POST, the path otherwise) in the 400. */
  private iamName(name: string, user: string, field: 'body.UserName' | 'params.user'): string {
    const iamName = `${name}-${user}`;
    if (iamName.length > MAX_IAM_USER_NAME) {
      throw badRequest(`The IAM user name ${iamName} is longer than ${MAX_IAM_USER_NAME} characters.`, [
        { field, message: `makes the IAM user name "{name}-{user}" longer than ${MAX_IAM_USER_NAME} characters` },
      ]);
    }
    return iamName;
  }

  private notFound(group: string, name: string, user: string): HttpProblem {
    return new HttpProblem(404, `User ${user} of repository ${group}/${name} not found.`);
  }

  private serviceTags(group: string, name: string, iamName: string): Tag[] {
    return [
      { Key: NAME_TAG, Value: iamName },
      { Key: RESOURCE_NAME_TAG, Value: `${group}/${name}` },
      { Key: ORG_TAG, Value: this.ownership.org },
      { Key: GROUP_TAG, Value: group },
    ];
  }

  /** The session of the account, after checking that the repository is this org's and group's. */
  private async session(account: string, group: string, name: string) {
    const session = await this.sessions.get(account);
    await this.ownership.require(session.ecr, group, name);
    return session;
  }

  /** The IAM user, when it exists at the repository's path; 404 otherwise. */
  private async owned(iam: IAMClient, group: string, name: string, user: string): Promise<IamUser & { UserName: string }> {
    const UserName = this.iamName(name, user, 'params.user');
    try {
      const found = (await iam.send(new GetUserCommand({ UserName }))).User;
      if (!found || found.Path !== this.path(group, name)) throw this.notFound(group, name, user);
      return { ...found, UserName };
    } catch (err) {
      if ((err as Error).name === 'NoSuchEntityException') throw this.notFound(group, name, user);
      throw err;
    }
  }

  private async iamUsers(iam: IAMClient, group: string, name: string): Promise<string[]> {
    const names: string[] = [];
    // The trailing slash matters: without it, repository "app" would also list the users of "app2".
    for await (const page of paginateListUsers({ client: iam }, { PathPrefix: this.path(group, name) })) {
      for (const u of page.Users ?? []) if (u.UserName && u.Path === this.path(group, name)) names.push(u.UserName);
    }
    return names.sort();
  }

  private shortName(name: string, iamName: string): string {
    return iamName.startsWith(`${name}-`) ? iamName.slice(name.length + 1) : iamName;
  }

  async list(account: string, group: string, name: string): Promise<string[]> {
    const { iam } = await this.session(account, group, name);
    return (await this.iamUsers(iam, group, name)).map((u) => this.shortName(name, u));
  }

  /**
   * Makes sure the org's policy and group exist, then CreateUser and AddUserToGroup, then checks
   * that the repository is still there (repositoryStillThere); a user that could not be added to
   * the group, or whose repository was deleted meanwhile, is deleted again, unless another request
   * has made it its own meanwhile. No access key yet: PUT with ResetKey issues one. A user of that
   * name that a create failed part-way through left behind is completed instead (completeExisting).
   */
  async create(account: string, group: string, name: string, input: { user: string; tags: Tag[] | undefined }): Promise<User> {
    const UserName = this.iamName(name, input.user, 'body.UserName');
    const tags = [...callerTags(input.tags ?? []), ...this.serviceTags(group, name, UserName)];
    checkTagCount(tags.length);
    return this.oneAtATime(account, UserName, () => this.createNow(account, group, name, input, UserName, tags));
  }

  private async createNow(
    account: string,
    group: string,
    name: string,
    input: { user: string; tags: Tag[] | undefined },
    UserName: string,
    tags: Tag[],
  ): Promise<User> {
    const { iam, ecr } = await this.session(account, group, name);
    await this.access.ensure(iam, account);
    let sentAt = 0;
    /** CreateUser's "already exists": nothing of this request was applied. */
    let taken: unknown;
    /** This request's AddUserToGroup was sent and not undone: a membership of the group is its own. */
    let joined = false;
    /** The last check found the repository deleted. */
    let repositoryGone = false;
    const addToGroup = this.addToGroup(iam, UserName);
    try {
      await applySteps([
        {
          what: `create the IAM user ${UserName}`,
          apply: async () => {
            sentAt = Date.now();
            try {
              await iam.send(new CreateUserCommand({ UserName, Path: this.path(group, name), Tags: tags }));
            } catch (err) {
              if ((err as Error).name === 'EntityAlreadyExistsException') taken = err;
              throw err;
            }
          },
          // IAM refuses to delete a user that is in a group: the group's undo below comes first.
          undo: async (unconfirmed) => {
            const found = (await ifThere('NoSuchEntityException', iam.send(new GetUserCommand({ UserName }))))?.User;
            if (!found) return;
            // Gone while being read (its repository's delete deleted it): nothing left to undo.
            const read = await ifThere(
              'NoSuchEntityException',
              this.changedSinceCreate(iam, group, name, found, UserName, sentAt, tags, joined ? this.access.groupName : undefined).then(
                (why) => ({ why }),
              ),
            );
            if (!read) return;
            const changed = read.why;
            // Unanswered, a user not as that CreateUser would have left it is someone else's: the call failed.
            if (changed && unconfirmed) return;
            if (changed) throw new UndoDeclined(changed);
            await unlessGone('NoSuchEntityException', iam.send(new DeleteUserCommand({ UserName })));
          },
        },
        {
          ...addToGroup,
          apply: async () => {
            joined = true;
            try {
              await addToGroup.apply();
            } catch (err) {
              // Refused: it did not take effect. Unanswered, it may have (its undo is then tried).
              joined = mayHaveTakenEffect(err);
              throw err;
            }
          },
          undo: async (unconfirmed) => {
            await addToGroup.undo!(unconfirmed);
            joined = false;
          },
        },
        this.repositoryStillThere(ecr, group, name, input.user, () => (repositoryGone = true)),
      ]);
    } catch (err) {
      if (repositoryGone) throw await this.leftBehind(iam, group, name, UserName, err);
      if (taken === undefined) throw err;
      return this.completeExisting(iam, ecr, account, group, name, input, UserName, taken);
    }
    return { UserName: input.user, AccessKeys: [], Groups: [ADMIN_GROUP], Tags: tags };
  }

  /**
   * `err`, the 404 of a create whose repository was deleted meanwhile, once its rollback is done:
   * when the IAM user is still there (the rollback failed), the answer names it and its path, which
   * the user routes no longer reach, and says how it goes: a new repository of that name deletes it
   * before it is created (RepositoryStore.create), or it is deleted by hand.
   */
  private async leftBehind(iam: IAMClient, group: string, name: string, UserName: string, err: unknown): Promise<unknown> {
    if (!(err instanceof HttpProblem)) return err;
    const path = this.path(group, name);
    let left: boolean | undefined;
    try {
      const found = (await ifThere('NoSuchEntityException', iam.send(new GetUserCommand({ UserName }))))?.User;
      left = found?.Path === path;
    } catch {
      left = undefined;
    }
    if (left === false) return err;
    const what =
      left === undefined
        ? `The IAM user ${UserName} (path ${path}) may remain (reading it back failed)`
        : `The IAM user ${UserName} (path ${path}) remains`;
    return new HttpProblem(
      err.statusCode,
      `${err.message} ${what}, and the user routes no longer reach it: creating the repository ${group}/${name} again deletes it first, or delete that IAM user by hand.`,
      { headers: err.headers, cause: err },
    );
  }

  /**
   * A create's last step: the repository is still there, this org's and group's (the check every
   * route starts with, again). A repository's DELETE lists its users, deletes them, then the
   * repository: a user created after that listing would outlive the repository, in the group, and
   * a new repository of the same name would list it and open to it. Found gone, the create rolls
   * back (the user out of the group, then deleted) and answers 404. A check that comes before the
   * DeleteRepository finds the repository; that delete then lists the users again after it and
   * deletes this one (RepositoryStore.delete), naming it in its answer.
   */
  private repositoryStillThere(ecr: ECRClient, group: string, name: string, user: string, onGone?: () => void): Step {
    return {
      what: `find the repository ${group}/${name} still there`,
      apply: async () => {
        try {
          await this.ownership.require(ecr, group, name);
        } catch (err) {
          if (!(err instanceof HttpProblem) || err.statusCode !== 404) throw err;
          onGone?.();
          throw new HttpProblem(404, `Repository ${group}/${name} was deleted while its user ${user} was being created.`, { cause: err });
        }
      },
      // It only reads: a check that got no answer left nothing to undo (the steps before it are).
      undo: async () => {},
    };
  }

  private addToGroup(iam: IAMClient, UserName: string): Step {
    const GroupName = this.access.groupName;
    return {
      what: `add ${UserName} to the group ${GroupName}`,
      apply: async () => void (await iam.send(new AddUserToGroupCommand({ UserName, GroupName }))),
      undo: async () => unlessGone('NoSuchEntityException', iam.send(new RemoveUserFromGroupCommand({ UserName, GroupName }))),
    };
  }

  /**
   * CreateUser answered that `{name}-{user}` exists. When it is this repository's user as a create
   * that failed part-way left it (CreateUser done, AddUserToGroup not, and its rollback failed:
   * `STILL APPLIED: create the IAM user ...`) — at the repository's path, carrying the service's
   * four tags for this repository, org and group, and in no group — the create is completed: the
   * request's tags merged (TagUser, only those that differ), then AddUserToGroup. Such a user is
   * useless to anyone else (outside the group it can reach nothing), and is exactly the one this
   * request would create. Created less than `creatingMs` ago, it may instead be another replica's
   * create between its CreateUser and AddUserToGroup: a 409 with Retry-After, so that this request
   * neither answers 200 for a user that create then rolls back, nor merges tags over the ones that
   * create answers. Anything else stays as it is and is a 409 that says what to do. A completion
   * that fails, or whose repository is gone by its end (repositoryStillThere), is rolled back to
   * the user as it was found (never deleted here).
   */
  private async completeExisting(
    iam: IAMClient,
    ecr: ECRClient,
    account: string,
    group: string,
    name: string,
    input: { user: string; tags: Tag[] | undefined },
    UserName: string,
    cause: unknown,
  ): Promise<User> {
    const conflict = (detail: string) => new HttpProblem(409, detail, { cause });
    const found = (await ifThere('NoSuchEntityException', iam.send(new GetUserCommand({ UserName }))))?.User;
    if (!found) throw conflict(`The IAM user ${UserName} existed a moment ago and is gone now; retry the request.`);
    if (found.Path !== this.path(group, name)) {
      // IAM user names are unique per account: "app-ci" may belong to another group's "app".
      throw conflict(
        `The IAM user ${UserName} already exists in account ${account}, but not as a user of ${group}/${name} (user names are {name}-{user}, unique per account): choose another UserName.`,
      );
    }
    const current = toTags(found.Tags);
    const value = (key: string) => current.find((t) => keyOf(t.Key) === keyOf(key))?.Value;
    const ours = this.serviceTags(group, name, UserName).every((t) => value(t.Key) === t.Value);
    const groups = await this.groupsOf(iam, UserName);
    const userPath = `/v1/ecr/${account}/repositories/${group}/${name}/users/${input.user}`;
    if (ours && groups.includes(this.access.groupName)) {
      throw conflict(
        `The user ${input.user} of ${group}/${name} already exists (IAM user ${UserName}): GET ${userPath} shows it, PUT with ResetKey issues its access key.`,
      );
    }
    if (!ours || groups.length) {
      const why = !ours ? 'without the tags this service gives its users' : `in other groups (${groups.join(', ')})`;
      throw conflict(
        `The IAM user ${UserName} exists at the path of ${group}/${name} but ${why}, so it was not completed: DELETE ${userPath} deletes it, then create it again.`,
      );
    }
    const creating = stillCreating(found.CreateDate, this.creatingMs);
    if (creating) {
      throw new HttpProblem(
        409,
        `The user ${input.user} of ${group}/${name} already exists (IAM user ${UserName}), in no group yet, created ${creating.agoS} s ago: the create that made it may still be under way. Retry in ${creating.retryS} s: if it is then still in no group, the create is completed.`,
        { headers: { 'retry-after': String(creating.retryS) }, cause },
      );
    }
    const changes = callerTags(input.tags ?? [], current).filter((t) => value(t.Key) !== t.Value);
    const merged = mergeTags(current, changes);
    await applySteps([
      ...(changes.length ? [tagStep(iam, UserName, current, changes)] : []),
      this.addToGroup(iam, UserName),
      this.repositoryStillThere(ecr, group, name, input.user),
    ]);
    const keys = await this.accessKeys(iam, UserName);
    return {
      UserName: input.user,
      AccessKeys: keys.map(keyMeta),
      Groups: [ADMIN_GROUP],
      Tags: merged,
    };
  }

  /**
   * Why `found` is not as a CreateUser sent at `sentAt` with `tags` left it (at the repository's
   * path, created since, in no group, without keys, with those tags), or undefined when it is. A
   * user another request has since added to a group, given a key or tagged may have been answered
   * 200 by it, and is not this request's to delete; when the CreateUser got no answer, a user not
   * so is one that call found taken.
   */
  private async changedSinceCreate(
    iam: IAMClient,
    group: string,
    name: string,
    found: IamUser,
    UserName: string,
    sentAt: number,
    tags: Tag[],
    /** The group this request added it to and could not take it out of again: not another request's doing. */
    ownGroup?: string,
  ): Promise<string | undefined> {
    if (found.Path !== this.path(group, name) || (found.CreateDate?.getTime() ?? 0) < sentAt - CLOCK_SLACK_MS) {
      return 'it is not the user this request created';
    }
    const [all, keys] = await Promise.all([this.groupsOf(iam, UserName), this.accessKeys(iam, UserName)]);
    const groups = all.filter((g) => g !== ownGroup);
    if (groups.length) return `it is in the group ${groups.join(', ')} now, added by another request`;
    if (keys.length) return 'it has an access key now, issued by another request';
    if (!sameTags(toTags(found.Tags), tags)) return 'its tags were changed by another request';
    // This request's own membership, which its undo could not remove (named with it): IAM refuses to delete the user.
    if (ownGroup && all.includes(ownGroup)) return `it is still in the group ${ownGroup}, as removing it failed`;
    return undefined;
  }

  async get(account: string, group: string, name: string, user: string): Promise<User> {
    const { iam } = await this.session(account, group, name);
    const found = await this.owned(iam, group, name, user);
    const [keys, groups] = await Promise.all([this.accessKeys(iam, found.UserName), this.groupsOf(iam, found.UserName)]);
    return {
      UserName: user,
      AccessKeys: keys.map(keyMeta),
      Groups: groups.map((g) => g.replace(new RegExp(`-${escapeRegExp(this.ownership.org)}$`), '')),
      Tags: toTags(found.Tags),
    };
  }

  private async accessKeys(iam: IAMClient, UserName: string): Promise<AccessKeyMetadata[]> {
    const keys: AccessKeyMetadata[] = [];
    for await (const page of paginateListAccessKeys({ client: iam }, { UserName })) keys.push(...(page.AccessKeyMetadata ?? []));
    return keys.sort((a, b) => (a.CreateDate?.getTime() ?? 0) - (b.CreateDate?.getTime() ?? 0));
  }

  private async groupsOf(iam: IAMClient, UserName: string): Promise<string[]> {
    const groups: string[] = [];
    for await (const page of paginateListGroupsForUser({ client: iam }, { UserName })) {
      for (const g of page.Groups ?? []) if (g.GroupName) groups.push(g.GroupName);
    }
    return groups;
  }

  /**
   * Merges tags (TagUser), then, with ResetKey, issues a new access key and deletes the old ones.
   * IAM allows two keys per user: with two already, the newer is deleted first to make room. The
   * older is kept until the new key exists: after an earlier reset that failed once its new key was
   * made (its secret never returned), the older one is the key the client still holds, and
   * deleting it first left the user, when CreateAccessKey then failed, only a key whose secret
   * nobody has.
   * When a step fails, the earlier ones are rolled back where they can be (a new key is deleted
   * again, so its secret is never lost while the key works, unless it is the only key left) and the
   * answer names what stays done. A delete whose answer was lost is read back before anything is
   * rolled back.
   */
  async update(
    account: string,
    group: string,
    name: string,
    user: string,
    input: { resetKey: boolean; tags: Tag[] | undefined },
  ): Promise<UpdatedUser> {
    return this.oneAtATime(account, `${name}-${user}`, () => this.updateNow(account, group, name, user, input));
  }

  private async updateNow(
    account: string,
    group: string,
    name: string,
    user: string,
    input: { resetKey: boolean; tags: Tag[] | undefined },
  ): Promise<UpdatedUser> {
    const { iam } = await this.session(account, group, name);
    const found = await this.owned(iam, group, name, user);
    const UserName = found.UserName;
    const current = toTags(found.Tags);
    const changes = callerTags(input.tags ?? [], current);
    const merged = mergeTags(current, changes);
    const steps: Step[] = [];
    if (changes.length) steps.push(tagStep(iam, UserName, current, changes));
    let created: UpdatedUser['AccessKey'];
    const deleted: string[] = [];
    if (input.resetKey) {
      const old = await this.accessKeys(iam, UserName);
      const oldIds = new Set(old.map((k) => k.AccessKeyId));
      const deleteKey = (id: string): Step => ({
        what: `delete the access key ${id}`,
        apply: async () => {
          // NoSuchEntity: gone already, perhaps by an attempt of this call whose answer was lost.
          await unlessGone('NoSuchEntityException', iam.send(new DeleteAccessKeyCommand({ UserName, AccessKeyId: id })));
          deleted.push(id);
        },
        // A delete whose answer was lost is read back: undoing the new key after it would leave
        // the user without a key that works.
        tookEffect: async () => {
          const gone = !(await this.accessKeys(iam, UserName)).some((k) => k.AccessKeyId === id);
          if (gone) deleted.push(id);
          return gone;
        },
      });
      // Room for the new key: the newest old keys go first, the oldest (the one a client most likely
      // holds; a newer one may be a failed reset's key whose secret was never returned) is kept until
      // the new key exists.
      const room = old.length >= 2 ? old.slice(1) : [];
      const rest = old.slice(0, old.length - room.length);
      let sentAt = 0;
      steps.push(...room.map((k) => deleteKey(k.AccessKeyId!)));
      steps.push({
        what: `create a new access key for ${UserName}`,
        apply: async () => {
          sentAt = Date.now();
          const key = (await iam.send(new CreateAccessKeyCommand({ UserName }))).AccessKey;
          if (!key?.AccessKeyId || !key.SecretAccessKey) throw new HttpProblem(502, 'AWS answered CreateAccessKey without a key.');
          created = {
            AccessKeyId: key.AccessKeyId,
            CreateDate: rfc3339(key.CreateDate) ?? '',
            SecretAccessKey: key.SecretAccessKey,
            Status: key.Status ?? '',
            UserName: key.UserName ?? UserName,
          };
        },
        undo: async (unconfirmed) => {
          const keys = await this.accessKeys(iam, UserName);
          // Unanswered, the new key's id is unknown: it is the key that was not there before.
          const isNew = (k: AccessKeyMetadata) =>
            unconfirmed
              ? !oldIds.has(k.AccessKeyId) && (k.CreateDate?.getTime() ?? 0) >= sentAt - CLOCK_SLACK_MS
              : k.AccessKeyId === created?.AccessKeyId;
          const fresh = keys.filter(isNew);
          if (!unconfirmed && old.length > 0 && fresh.length === keys.length) {
            throw new UndoDeclined("it is now the user's only access key, and its secret is not returned: reset the key again");
          }
          for (const k of fresh) {
            await unlessGone('NoSuchEntityException', iam.send(new DeleteAccessKeyCommand({ UserName, AccessKeyId: k.AccessKeyId })));
          }
        },
      });
      steps.push(...rest.map((k) => deleteKey(k.AccessKeyId!)));
    }
    await applySteps(steps);
    return {
      UserName: user,
      ...(created ? { AccessKey: created, DeletedAccessKeys: deleted } : {}),
      Tags: merged,
    };
  }

  async delete(account: string, group: string, name: string, user: string): Promise<DeletedUser> {
    return this.oneAtATime(account, `${name}-${user}`, async () => {
      const { iam } = await this.session(account, group, name);
      const found = await this.owned(iam, group, name, user);
      return { UserName: user, ...(await this.remove(iam, found.UserName)) };
    });
  }

  /**
   * RemoveUserFromGroup for each group, DeleteAccessKey for each key, then DeleteUser (IAM refuses
   * to delete a user that still has either). None of it can be undone: a failure answers what was
   * done. A call that got no answer is read back, and goes on as done when it was. What IAM no
   * longer holds when its call comes (NoSuchEntity: a key a ResetKey has just replaced, a user
   * another delete has just removed) is done: that was a 404 for the whole delete, and a repository
   * delete then left the repository and its user, whose key the ResetKey had answered, in place.
   */
  private async remove(iam: IAMClient, UserName: string): Promise<Omit<DeletedUser, 'UserName'>> {
    const [groups, keys] = await Promise.all([this.groupsOf(iam, UserName), this.accessKeys(iam, UserName)]);
    const gone = 'NoSuchEntityException';
    await applySteps([
      ...groups.map((GroupName) => ({
        what: `remove ${UserName} from the group ${GroupName}`,
        apply: () => unlessGone(gone, iam.send(new RemoveUserFromGroupCommand({ UserName, GroupName }))),
        tookEffect: async () => !(await this.groupsOf(iam, UserName)).includes(GroupName),
      })),
      ...keys.map((k) => ({
        what: `delete the access key ${k.AccessKeyId}`,
        apply: () => unlessGone(gone, iam.send(new DeleteAccessKeyCommand({ UserName, AccessKeyId: k.AccessKeyId }))),
        tookEffect: async () => !(await this.accessKeys(iam, UserName)).some((left) => left.AccessKeyId === k.AccessKeyId),
      })),
      {
        what: `delete the IAM user ${UserName}`,
        apply: () => unlessGone(gone, iam.send(new DeleteUserCommand({ UserName }))),
        tookEffect: async () => !(await ifThere(gone, iam.send(new GetUserCommand({ UserName })))),
      },
    ]);
    return { DeletedAccessKeys: keys.map((k) => k.AccessKeyId!), RemovedFromGroups: groups };
  }

  /**
   * Deletes every user of a repository (the repository's ownership already checked), one after
   * the other, each in its turn with the user's own changes on this replica (a ResetKey under way
   * finishes first); answers their names. A failure names the users already deleted.
   */
  async deleteAll(account: string, iam: IAMClient, group: string, name: string): Promise<string[]> {
    const users = await this.iamUsers(iam, group, name);
    return this.removeAll(account, iam, name, users, (iamName, done) => {
      const already = done.length ? ` Users deleted before: ${done.join(', ')}.` : '';
      return `Could not delete the user ${iamName} of ${group}/${name}, so the repository was not deleted.${already}`;
    });
  }

  /**
   * Before a repository's CreateRepository: deletes the IAM users at its path when the repository
   * does not exist (`absent`, asked only when there are some), and answers their IAM names. A
   * repository's users are deleted with it, so any found there are what a deleted repository of
   * that name left: a user create whose rollback failed once it found the repository gone, a
   * repository delete whose DeleteRepository and second listing failed, or the original service,
   * which deleted the repository first and only logged the failures. The new repository would list
   * them and be open to them. Listed before `absent` is asked, none of them can be a user of a
   * repository created since. A failure throws a problem that says the repository was not created.
   */
  async deleteOrphans(account: string, iam: IAMClient, group: string, name: string, absent: () => Promise<boolean>): Promise<string[]> {
    const path = this.path(group, name);
    const notCreated = `so the repository ${group}/${name} was not created`;
    let users: string[];
    try {
      users = await this.iamUsers(iam, group, name);
      if (!users.length || !(await absent())) return [];
    } catch (err) {
      throw explain(
        err,
        `Could not check for IAM users left at the path ${path} by a deleted repository of that name (a new repository would be open to them), ${notCreated} (nothing was changed).`,
      );
    }
    const done = await this.removeAll(account, iam, name, users, (iamName, deleted) => {
      const before = deleted.length ? ` Deleted before it: ${deleted.map((u) => `${name}-${u}`).join(', ')}.` : '';
      return `Could not delete the IAM user ${iamName} (path ${path}), left by a deleted repository of that name (a new repository would be open to it), ${notCreated}.${before}`;
    });
    return users.filter((u) => done.includes(this.shortName(name, u)));
  }

  /**
   * After DeleteRepository: deletes the users found at the deleted repository's path, which a
   * create made while the repository was being deleted (its last check found the repository still
   * there: repositoryStillThere), and answers their names. The user routes no longer reach them,
   * the repository being gone, so a failure names the IAM user to delete by hand, and `deleted`
   * (the users deleted before DeleteRepository) with the others.
   */
  async deleteLate(
    account: string,
    iam: IAMClient,
    group: string,
    name: string,
    deleted: string[],
    gone = `The repository ${group}/${name} was deleted`,
  ): Promise<string[]> {
    const path = this.path(group, name);
    const before = (done: string[]) => {
      const all = [...deleted, ...done];
      return all.length ? ` Its users were deleted: ${all.join(', ')}.` : '';
    };
    let users: string[];
    try {
      users = await this.iamUsers(iam, group, name);
    } catch (err) {
      throw lateProblem(
        err,
        `${gone}, but listing its IAM users again failed: a user created while it was being deleted may remain at the IAM path ${path}, which the user routes no longer reach: creating the repository ${group}/${name} again deletes it first, or delete it by hand.${before([])}`,
      );
    }
    return this.removeAll(
      account,
      iam,
      name,
      users,
      (iamName, done) =>
        `${gone}, but the IAM user ${iamName} found at its path (${path}) after that could not be deleted. It was created while the repository was being deleted, or it is a user of a repository ${group}/${name} created again since (on another replica): check GET /v1/ecr/${account}/repositories/${group}/${name}/users first. If that does not list it, the user routes no longer reach it: creating the repository ${group}/${name} again deletes it first, or delete that IAM user by hand.${before(done)}`,
      lateProblem,
    );
  }

  /**
   * Removes `users` one after the other, each in its turn with the user's own changes on this
   * replica; answers the short names of those it deleted. A user gone before its delete began
   * (another request deleted it, or a create rolled it back) is skipped. A failure is the problem
   * `explained` makes with `detail`.
   */
  private async removeAll(
    account: string,
    iam: IAMClient,
    name: string,
    users: string[],
    detail: (iamName: string, done: string[]) => string,
    explained: (err: unknown, detail: string) => HttpProblem = explain,
  ): Promise<string[]> {
    const done: string[] = [];
    for (const iamName of users) {
      try {
        await this.oneAtATime(account, iamName, () => this.remove(iam, iamName));
      } catch (err) {
        // Its groups and keys could not be read: it was no longer there (remove's later calls take a gone user as deleted).
        if ((err as Error).name === 'NoSuchEntityException') continue;
        throw explained(err, detail(iamName, done));
      }
      done.push(this.shortName(name, iamName));
    }
    return done;
  }
}

/**
 * explain(), for a failure after the repository was deleted: without Retry-After, since a retried
 * DELETE of the repository is a 404 now and does not delete the user.
 */
function lateProblem(err: unknown, detail: string): HttpProblem {
  const problem = explain(err, detail);
  return new HttpProblem(problem.statusCode, problem.message, { cause: err });
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
