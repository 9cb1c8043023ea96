import {
  CreateRepositoryCommand,
  DeleteRepositoryCommand,
  DeleteRepositoryPolicyCommand,
  DescribeImagesCommand,
  DescribeRepositoriesCommand,
  GetRepositoryPolicyCommand,
  paginateDescribeImages,
  paginateDescribeRepositories,
  PutImageScanningConfigurationCommand,
  SetRepositoryPolicyCommand,
  ListTagsForResourceCommand,
  TagResourceCommand,
  UntagResourceCommand,
  type ECRClient,
  type ImageDetail,
  type Repository as EcrRepository,
} from '@aws-sdk/client-ecr';
import { paginateGetResources, type ResourceGroupsTaggingAPIClient } from '@aws-sdk/client-resource-groups-tagging-api';
import { badRequest, HttpProblem } from '@platform/http-common';
import type { FastifyBaseLogger } from 'fastify';
import type { ListStrategy } from '../config.js';
import { MAX_TAGS, type Tag } from '../schemas/common.js';
import type { Image } from '../schemas/image.js';
import { MAX_REPOSITORY_NAME, type DeletedRepository, type Repository } from '../schemas/repository.js';
import type { AccountSessions } from './credentials.js';
import { mapLimit } from './map-limit.js';
import { GROUP_TAG, NAME_TAG, ORG_TAG, Ownership, toTags } from './ownership.js';
import { groupsFromPolicy, MAX_POLICY_LENGTH, repositoryPolicy } from './repository-policy.js';
import { classifyAwsError } from './errors.js';
import { stillCreating } from './create-window.js';
import { currentDeadline, Deadline, withDeadline } from './deadline.js';
import { KeyedLock } from './keyed-lock.js';
import { applySteps, UNDO_DEADLINE_MS, UndoDeclined, type Step } from './steps.js';
import { CLOCK_SLACK_MS, ifThere, mayHaveTakenEffect, unlessGone } from './unanswered.js';
import type { RepositoryUsers } from './users.js';

const RESERVED_TAGS = new Set([ORG_TAG, GROUP_TAG, NAME_TAG]);

/**
 * Time as the original's Go JSON wrote it (time.RFC3339Nano): fractional seconds without their
 * trailing zeros, none for a whole second (`...18.8Z`, `...18Z`).
 */
export function rfc3339(date: Date | undefined): string | undefined {
  return date ? date.toISOString().replace(/\.(\d*?)0*Z$/, (_, digits: string) => (digits ? `.${digits}Z` : 'Z')) : undefined;
}

/**
 * The caller's tags without the ones the service owns, duplicates resolved to the last value,
 * then the service's own: Name, spinup:org and spinup:spaceid (the original's order).
 */
function normalizeTags(org: string, group: string, repository: string, tags: Tag[] = []): Tag[] {
  return [...userTags(tags), { Key: NAME_TAG, Value: repository }, { Key: ORG_TAG, Value: org }, { Key: GROUP_TAG, Value: group }];
}

function userTags(tags: Tag[]): Tag[] {
  const byKey = new Map<string, string>();
  for (const t of tags) if (!RESERVED_TAGS.has(t.Key)) byKey.set(t.Key, t.Value);
  return [...byKey].map(([Key, Value]) => ({ Key, Value }));
}

/** ECR's TagResource semantics: values of existing keys replaced in place, new keys appended. */
function mergeTags(existing: Tag[], changes: Tag[]): Tag[] {
  const merged = new Map(existing.map((t) => [t.Key, t.Value]));
  for (const t of changes) merged.set(t.Key, t.Value);
  return [...merged].map(([Key, Value]) => ({ Key, Value }));
}

function toRepository(r: EcrRepository, tags: Tag[], groups: string[]): Repository {
  return {
    CreatedAt: rfc3339(r.createdAt) ?? '',
    EncryptionType: r.encryptionConfiguration?.encryptionType ?? '',
    Groups: groups,
    KmsKeyId: r.encryptionConfiguration?.kmsKey ?? '',
    ScanOnPush: String(r.imageScanningConfiguration?.scanOnPush ?? false),
    ImageTagMutability: r.imageTagMutability ?? '',
    RegistryId: r.registryId ?? '',
    RepositoryArn: r.repositoryArn ?? '',
    RepositoryName: r.repositoryName ?? '',
    RepositoryUri: r.repositoryUri ?? '',
    Tags: tags,
  };
}

/** 400 unless `count` tags, the service's three included, fit on a repository. */
function checkTagCount(count: number, field: string): void {
  if (count > MAX_TAGS) {
    throw badRequest(
      `A repository holds at most ${MAX_TAGS} tags, Name, spinup:org and spinup:spaceid included; this would make ${count}.`,
      [{ field, message: `makes ${count} tags on the repository, more than ${MAX_TAGS} (3 of them are the service's)` }],
    );
  }
}

/** 400 unless the policy naming `groups` fits in SetRepositoryPolicy (checked before any AWS call). */
function checkPolicyLength(groups: readonly string[]): void {
  const length = repositoryPolicy(groups).length;
  if (length > MAX_POLICY_LENGTH) {
    throw badRequest(`The repository policy naming these groups would be ${length} characters; ECR takes at most ${MAX_POLICY_LENGTH}.`, [
      { field: 'body.Groups', message: `makes a repository policy of ${length} characters, more than ECR's ${MAX_POLICY_LENGTH}` },
    ]);
  }
}

export function toImage(d: ImageDetail): Image {
  const image: Image = {
    ArtifactMediaType: d.artifactMediaType,
    ImageDigest: d.imageDigest,
    ImageManifestMediaType: d.imageManifestMediaType,
    ImagePushedAt: rfc3339(d.imagePushedAt),
    ImageScanFindingsSummary: d.imageScanFindingsSummary && {
      FindingSeverityCounts: Object.fromEntries(
        Object.entries(d.imageScanFindingsSummary.findingSeverityCounts ?? {}).filter(
          (e): e is [string, number] => typeof e[1] === 'number',
        ),
      ),
      ImageScanCompletedAt: rfc3339(d.imageScanFindingsSummary.imageScanCompletedAt),
      VulnerabilitySourceUpdatedAt: rfc3339(d.imageScanFindingsSummary.vulnerabilitySourceUpdatedAt),
    },
    ImageScanStatus: d.imageScanStatus && { Description: d.imageScanStatus.description, Status: d.imageScanStatus.status },
    ImageSizeInBytes: d.imageSizeInBytes,
    ImageTags: d.imageTags ?? [],
    LastRecordedPullTime: rfc3339(d.lastRecordedPullTime),
    RegistryId: d.registryId,
    RepositoryName: d.repositoryName,
  };
  return image;
}

/** `arn:aws:ecr:us-east-1:123456789012:repository/group/name` → `group/name`. */
function repositoryNameFromArn(arn: string): string | undefined {
  const parts = arn.split(':');
  const resource = parts.length >= 6 ? parts.slice(5).join(':') : '';
  return resource.startsWith('repository/') ? resource.slice('repository/'.length) : undefined;
}

export interface CreateInput {
  name: string;
  scanOnPush: boolean;
  imageTagMutability: 'MUTABLE' | 'IMMUTABLE';
  encryption: { type: 'AES256' } | { type: 'KMS'; kmsKey?: string };
  tags: Tag[] | undefined;
  /** Other groups (spaces) of the org that may pull. */
  groups: string[] | undefined;
}

export interface UpdateInput {
  scanOnPush?: boolean;
  tags?: Tag[];
  groups?: string[];
}

/** SetRepositoryPolicy naming `groups`, on a repository being created. */
function setPolicy(ecr: ECRClient, repositoryName: string, groups: string[], undo: () => Promise<void>): Step {
  const policyText = repositoryPolicy(groups);
  return {
    what: `set the repository policy of ${repositoryName}`,
    apply: async () => void (await ecr.send(new SetRepositoryPolicyCommand({ repositoryName, policyText }))),
    undo,
  };
}

/** The request's fields in which an existing repository is not as the create would have made it. */
function differences(repository: EcrRepository, existingTags: Tag[], input: CreateInput, tags: Tag[]): string[] {
  const out: string[] = [];
  if ((repository.imageScanningConfiguration?.scanOnPush ?? false) !== input.scanOnPush) out.push('ScanOnPush');
  if ((repository.imageTagMutability ?? 'MUTABLE') !== input.imageTagMutability) out.push('ImageTagMutability');
  const encryption = repository.encryptionConfiguration;
  const kmsKey = input.encryption.type === 'KMS' ? input.encryption.kmsKey : undefined;
  if (
    (encryption?.encryptionType ?? 'AES256') !== input.encryption.type ||
    (kmsKey !== undefined && encryption?.kmsKey !== kmsKey && !encryption?.kmsKey?.endsWith(`/${kmsKey}`))
  ) {
    out.push('encryption');
  }
  const sameTags =
    existingTags.length === tags.length && tags.every((t) => existingTags.some((e) => e.Key === t.Key && e.Value === t.Value));
  if (!sameTags) out.push('Tags');
  return out;
}

/** Whether the policy in place is `wanted`, whitespace aside (AWS may answer it reformatted). */
function samePolicy(current: string | undefined, wanted: string): boolean {
  if (current === undefined) return false;
  try {
    return JSON.stringify(JSON.parse(current)) === JSON.stringify(JSON.parse(wanted));
  } catch {
    return false;
  }
}

/** The Retry-After of a create that found the repository being deleted: ECR's DeleteRepository takes well under a second. */
const DELETED_RETRY_S = 1;

/** Whether `err` is ECR's "no such repository", or a problem it caused. */
const gone = (err: unknown): boolean =>
  (err as Error | undefined)?.name === 'RepositoryNotFoundException' || (err instanceof HttpProblem && gone(err.cause));

/** The repository's policy text, or undefined when it has none. */
async function readPolicy(ecr: ECRClient, repositoryName: string): Promise<string | undefined> {
  return (await ifThere('RepositoryPolicyNotFoundException', ecr.send(new GetRepositoryPolicyCommand({ repositoryName }))))?.policyText;
}

/** A repository create's request, its tags and groups checked (RepositoryStore.create). */
interface NewRepository {
  account: string;
  group: string;
  input: CreateInput;
  tags: Tag[];
  groups: string[];
}

/**
 * ECR repositories of one organisation, in any account the service can assume its role in.
 * The service enforces ownership itself (ownership.ts): it creates repositories only with its org
 * tags, lists only repositories carrying them, and reads a repository's tags before anything else
 * it does to it, answering 404 (the same 404 as for a missing one) when the org or group does not match.
 */
export class RepositoryStore {
  private readonly ownership: Ownership;
  /** This process's creates, updates and deletes, one at a time per account and repository. */
  private readonly changes = new KeyedLock();

  constructor(
    private readonly sessions: AccountSessions,
    private readonly org: string,
    private readonly listStrategy: ListStrategy,
    private readonly users: RepositoryUsers,
    /**
     * How long after its CreateRepository a repository without a policy may still be its create's
     * to finish, on this replica or another: the AWS deadline (no create runs longer) and
     * CREATE_CLOCK_SLACK_MS.
     */
    private readonly creatingMs: number,
  ) {
    this.ownership = new Ownership(org);
  }

  /**
   * `fn` once this process's earlier changes of the repository are done: two requests changing one
   * repository do not interleave their calls (a create's rollback deleting what another answered
   * created, two creates each setting their policy). Waiting counts against the request's deadline.
   */
  private oneAtATime<T>(account: string, repositoryName: string, fn: () => Promise<T>): Promise<T> {
    return this.changes.run(`${account}/${repositoryName}`, fn, (turn) => currentDeadline()?.race(turn) ?? turn);
  }

  /** Names of this org's repositories in the account, optionally of one group only, sorted. */
  async list(account: string, group?: string): Promise<string[]> {
    const session = await this.sessions.get(account);
    const names =
      this.listStrategy === 'tagging' ? await this.listByTags(session.tagging, group) : await this.listByDescribe(session.ecr, group);
    return names.sort();
  }

  /**
   * One GetResources query, paged to the end, finds the tagged repositories: calls grow with the
   * number of matching repositories / 100, not with every repository in the account.
   */
  private async listByTags(tagging: ResourceGroupsTaggingAPIClient, group?: string): Promise<string[]> {
    const TagFilters = [{ Key: ORG_TAG, Values: [this.org] }, ...(group === undefined ? [] : [{ Key: GROUP_TAG, Values: [group] }])];
    const names: string[] = [];
    for await (const page of paginateGetResources(
      { client: tagging, pageSize: 100 },
      { ResourceTypeFilters: ['ecr:repository'], TagFilters },
    )) {
      for (const r of page.ResourceTagMappingList ?? []) {
        const name = r.ResourceARN && repositoryNameFromArn(r.ResourceARN);
        if (name && this.ownership.isOwned(name, toTags(r.Tags), group)) names.push(name);
      }
    }
    return names;
  }

  /**
   * For emulators without ECR in the tagging API (moto answers GetResources with nothing):
   * DescribeRepositories paged to the end, then the tags of each candidate (N+1 calls; the group
   * listing only reads the tags of repositories named `{group}/...`).
   */
  private async listByDescribe(ecr: ECRClient, group?: string): Promise<string[]> {
    const candidates: EcrRepository[] = [];
    for await (const page of paginateDescribeRepositories({ client: ecr, pageSize: 1000 }, {})) {
      for (const r of page.repositories ?? []) {
        if (r.repositoryArn && r.repositoryName && (group === undefined || r.repositoryName.startsWith(`${group}/`))) candidates.push(r);
      }
    }
    const owned = await mapLimit(candidates, 8, async (r) => {
      const out = await ifThere('RepositoryNotFoundException', ecr.send(new ListTagsForResourceCommand({ resourceArn: r.repositoryArn })));
      if (!out) return undefined; // deleted meanwhile
      return this.ownership.isOwned(r.repositoryName!, toTags(out.tags), group) ? r.repositoryName! : undefined;
    });
    return owned.filter((n): n is string => n !== undefined);
  }

  /**
   * CreateRepository, then SetRepositoryPolicy (the groups that may pull). A repository whose
   * policy could not be set is deleted again, so a failed create leaves nothing behind, unless it
   * has a policy by then: another request set it (and may have answered so), and it is kept.
   */
  async create(account: string, group: string, input: CreateInput, log?: Pick<FastifyBaseLogger, 'info'>): Promise<Repository> {
    const repositoryName = `${group}/${input.name}`;
    if (repositoryName.length > MAX_REPOSITORY_NAME) {
      throw badRequest(`The repository name ${repositoryName} is longer than ${MAX_REPOSITORY_NAME} characters.`, [
        { field: 'body.RepositoryName', message: `makes the repository name longer than ${MAX_REPOSITORY_NAME} characters` },
      ]);
    }
    const tags = normalizeTags(this.org, group, repositoryName, input.tags);
    checkTagCount(tags.length, 'body.Tags');
    const groups = [...new Set(input.groups ?? [])];
    checkPolicyLength(groups);
    return this.oneAtATime(account, repositoryName, () => this.createNow({ account, group, input, tags, groups }, log));
  }

  private async createNow(request: NewRepository, log?: Pick<FastifyBaseLogger, 'info'>): Promise<Repository> {
    const { account, group, input, tags, groups } = request;
    const repositoryName = `${group}/${input.name}`;
    const { ecr, iam } = await this.sessions.get(account);
    // A user at the new repository's path is a deleted repository's of that name: the new one
    // would list it and be open to it.
    const orphans = await this.users.deleteOrphans(account, iam, group, input.name, async () => !(await this.exists(ecr, repositoryName)));
    if (orphans.length) {
      log?.info(
        { account, repository: repositoryName, users: orphans },
        `deleted the IAM users ${orphans.join(', ')}, left at the path of a deleted repository ${repositoryName}, before creating it again`,
      );
    }
    let created: EcrRepository | undefined;
    let sentAt = 0;
    const command = new CreateRepositoryCommand({
      repositoryName,
      imageTagMutability: input.imageTagMutability,
      imageScanningConfiguration: { scanOnPush: input.scanOnPush },
      encryptionConfiguration:
        input.encryption.type === 'KMS'
          ? { encryptionType: 'KMS', ...(input.encryption.kmsKey ? { kmsKey: input.encryption.kmsKey } : {}) }
          : { encryptionType: 'AES256' },
      tags,
    });
    /** CreateRepository's "already exists": nothing of this request was applied. */
    let taken = false;
    try {
      await applySteps([
        {
          what: `create the repository ${repositoryName}`,
          apply: async () => {
            sentAt = Date.now();
            try {
              created = (await ecr.send(command)).repository;
            } catch (err) {
              taken = (err as Error).name === 'RepositoryAlreadyExistsException';
              throw err;
            }
            if (!created) throw new HttpProblem(502, 'AWS answered CreateRepository without a repository.');
          },
          // Not forced: an image pushed in the meantime is not deleted with it.
          undo: async (unconfirmed) => {
            if (unconfirmed) {
              if (!(await this.justCreated(ecr, group, input.name, sentAt))) return;
            } else if (await this.policySince(ecr, repositoryName)) {
              // Another request (an update, on another replica) gave it a policy and may have answered it.
              throw new UndoDeclined('it has a pull policy now, set by another request');
            }
            await unlessGone('RepositoryNotFoundException', ecr.send(new DeleteRepositoryCommand({ repositoryName })));
          },
        },
        // Deleting the repository (the undo above) deletes its policy. A SetRepositoryPolicy that got
        // no answer took effect when the repository holds exactly that policy: the create is then
        // answered as done, which is what ECR holds, rather than the complete repository deleted.
        {
          ...setPolicy(ecr, repositoryName, groups, async () => {}),
          tookEffect: async () => samePolicy(await readPolicy(ecr, repositoryName), repositoryPolicy(groups)),
        },
      ]);
    } catch (err) {
      if (!taken) throw err;
      return this.completeExisting(ecr, request, err);
    }
    return toRepository(created!, tags, groups);
  }

  /** Whether a repository of that name exists (this org's or not). */
  private async exists(ecr: ECRClient, repositoryName: string): Promise<boolean> {
    return !!(await ifThere(
      'RepositoryNotFoundException',
      ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [repositoryName] })),
    ));
  }

  /**
   * Whether the repository, which this request created, has a policy now (someone else's: this
   * request's own SetRepositoryPolicy failed). Gone: it has none, and deleting it is done.
   */
  private async policySince(ecr: ECRClient, repositoryName: string): Promise<boolean> {
    try {
      return (await readPolicy(ecr, repositoryName)) !== undefined;
    } catch (err) {
      if ((err as Error).name === 'RepositoryNotFoundException') return false;
      throw err;
    }
  }

  /**
   * CreateRepository answered that `{group}/{name}` exists. When it is this org's and group's and
   * has no policy, it may be what a create that failed part-way left (CreateRepository done,
   * SetRepositoryPolicy not, and deleting it again failed: `STILL APPLIED: create the repository
   * ...`), or a create still under way, here or on another replica, whose SetRepositoryPolicy has
   * not been answered yet. Created less than `creatingMs` ago it may be the latter: a 409 with
   * Retry-After, so that this request neither sets a policy the other then overwrites nor answers
   * 200 for a repository the other's rollback then deletes. Older, empty and exactly as this
   * request would create it (ScanOnPush, ImageTagMutability, encryption, tags), the create is
   * completed: SetRepositoryPolicy, 200. Otherwise `problem` (the 409) stands, and for a repository
   * without a policy it says so and what to do. A repository with a policy, or another org's, is
   * answered as before.
   */
  private async completeExisting(ecr: ECRClient, request: NewRepository, problem: unknown): Promise<Repository> {
    const { group, input } = request;
    const repositoryName = `${group}/${input.name}`;
    try {
      let found: Awaited<ReturnType<Ownership['require']>>;
      try {
        found = await this.ownership.require(ecr, group, input.name);
      } catch (err) {
        // Another org's or group's: the 409 as it was. Not there at all: handled below.
        if (err instanceof HttpProblem && err.statusCode === 404 && !gone(err)) throw problem;
        throw err;
      }
      return await this.completeFound(ecr, request, problem, found);
    } catch (err) {
      // Gone since CreateRepository found it: a delete of it (on another replica) was under way.
      if (!gone(err)) throw err;
      throw new HttpProblem(
        409,
        `The repository ${repositoryName} existed when this request created it, and is gone now: it was being deleted. Nothing was changed; retry in ${DELETED_RETRY_S} s to create it.`,
        { headers: { 'retry-after': String(DELETED_RETRY_S) }, cause: err },
      );
    }
  }

  /** completeExisting, once the repository was found this org's and group's. */
  private async completeFound(
    ecr: ECRClient,
    request: NewRepository,
    problem: unknown,
    found: Awaited<ReturnType<Ownership['require']>>,
  ): Promise<Repository> {
    const { account, group, input, tags, groups } = request;
    const repositoryName = `${group}/${input.name}`;
    if ((await readPolicy(ecr, repositoryName)) !== undefined) throw problem;
    const { repository } = found;
    const creating = stillCreating(repository.createdAt, this.creatingMs);
    if (creating) {
      throw new HttpProblem(
        409,
        `The repository ${repositoryName} already exists, without its pull policy yet, created ${creating.agoS} s ago: the create that made it may still be under way. Retry in ${creating.retryS} s: if it is then still without a policy, empty and as this request would create it, the create is completed.`,
        { headers: { 'retry-after': String(creating.retryS) }, cause: problem },
      );
    }
    const empty = !(await ecr.send(new DescribeImagesCommand({ repositoryName, maxResults: 1 }))).imageDetails?.length;
    const differs = differences(repository, found.tags, input, tags);
    if (!empty || differs.length) {
      const why = !empty ? 'it holds images' : `this request differs in ${differs.join(', ')}`;
      const url = `/v1/ecr/${account}/repositories/${repositoryName}`;
      throw new HttpProblem(
        409,
        `The repository ${repositoryName} already exists, without its pull policy (a create that failed part-way leaves it so), and ${why}: PUT ${url} with Groups sets the policy${empty ? ', or DELETE it and create it again' : ''}.`,
        { cause: problem },
      );
    }
    // It had no policy: the undo deletes the one set.
    await applySteps([
      setPolicy(ecr, repositoryName, groups, () =>
        unlessGone('RepositoryPolicyNotFoundException', ecr.send(new DeleteRepositoryPolicyCommand({ repositoryName }))),
      ),
    ]);
    return toRepository(repository, found.tags, groups);
  }

  /**
   * Whether `{group}/{name}` is as a CreateRepository sent at `sentAt` that got no answer would have
   * left it: this org's and group's, created since, and without a policy yet. Otherwise that call
   * failed (the name was taken), and the repository is someone else's to keep.
   */
  private async justCreated(ecr: ECRClient, group: string, name: string, sentAt: number): Promise<boolean> {
    let repository: EcrRepository;
    try {
      ({ repository } = await this.ownership.require(ecr, group, name));
    } catch (err) {
      if (err instanceof HttpProblem && err.statusCode === 404) return false;
      throw err;
    }
    if ((repository.createdAt?.getTime() ?? 0) < sentAt - CLOCK_SLACK_MS) return false;
    return (await readPolicy(ecr, `${group}/${name}`)) === undefined;
  }

  async get(account: string, group: string, name: string): Promise<Repository> {
    const { ecr } = await this.sessions.get(account);
    const { repository, tags } = await this.ownership.require(ecr, group, name);
    const groups = groupsFromPolicy(await readPolicy(ecr, `${group}/${name}`));
    return toRepository(repository, tags, groups);
  }

  /**
   * Up to three changes (ScanOnPush, the groups' policy, tags), each a separate AWS call: when one
   * fails, the ones before it are rolled back, and the answer says so (steps.ts).
   */
  async update(account: string, group: string, name: string, input: UpdateInput): Promise<Repository> {
    if (input.groups !== undefined) checkPolicyLength(input.groups);
    return this.oneAtATime(account, `${group}/${name}`, () => this.updateNow(account, group, name, input));
  }

  private async updateNow(account: string, group: string, name: string, input: UpdateInput): Promise<Repository> {
    const { ecr } = await this.sessions.get(account);
    const { repository, tags } = await this.ownership.require(ecr, group, name);
    const repositoryName = `${group}/${name}`;
    // Only the tags that change: a key already holding that value costs no TagResource.
    const current = new Map(tags.map((t) => [t.Key, t.Value]));
    const changes = userTags(input.tags ?? []).filter((t) => current.get(t.Key) !== t.Value);
    const merged = changes.length ? mergeTags(tags, changes) : tags;
    checkTagCount(merged.length, 'body.Tags');
    const oldPolicy = await readPolicy(ecr, repositoryName);
    const steps: Step[] = [];
    let updated = repository;

    const oldScan = repository.imageScanningConfiguration?.scanOnPush ?? false;
    if (input.scanOnPush !== undefined && input.scanOnPush !== oldScan) {
      const scanOnPush = input.scanOnPush;
      const put = (value: boolean) =>
        ecr.send(new PutImageScanningConfigurationCommand({ repositoryName, imageScanningConfiguration: { scanOnPush: value } }));
      steps.push({
        what: `set ScanOnPush to ${scanOnPush}`,
        apply: async () => {
          const out = await put(scanOnPush);
          updated = { ...updated, imageScanningConfiguration: out.imageScanningConfiguration ?? { scanOnPush } };
        },
        undo: async () => void (await put(oldScan)),
      });
    }
    const policyText = input.groups !== undefined ? repositoryPolicy(input.groups) : undefined;
    if (policyText !== undefined && !samePolicy(oldPolicy, policyText)) {
      steps.push({
        what: 'set the groups that may pull',
        apply: async () => void (await ecr.send(new SetRepositoryPolicyCommand({ repositoryName, policyText }))),
        undo: async () => {
          if (oldPolicy === undefined) {
            await unlessGone('RepositoryPolicyNotFoundException', ecr.send(new DeleteRepositoryPolicyCommand({ repositoryName })));
          } else await ecr.send(new SetRepositoryPolicyCommand({ repositoryName, policyText: oldPolicy }));
        },
      });
    }
    if (changes.length) {
      const previous = new Map(tags.map((t) => [t.Key, t.Value]));
      const added = changes.filter((t) => !previous.has(t.Key)).map((t) => t.Key);
      const overwritten = changes.filter((t) => previous.has(t.Key)).map((t) => ({ Key: t.Key, Value: previous.get(t.Key)! }));
      steps.push({
        what: 'merge the tags',
        apply: async () => void (await ecr.send(new TagResourceCommand({ resourceArn: repository.repositoryArn, tags: changes }))),
        undo: async () => {
          if (added.length) await ecr.send(new UntagResourceCommand({ resourceArn: repository.repositoryArn, tagKeys: added }));
          if (overwritten.length) await ecr.send(new TagResourceCommand({ resourceArn: repository.repositoryArn, tags: overwritten }));
        },
      });
    }
    await applySteps(steps);
    const groups = input.groups !== undefined ? [...new Set(input.groups)] : groupsFromPolicy(oldPolicy);
    return toRepository(updated, merged, groups);
  }

  /**
   * Deletes the repository's IAM users first, then the repository with its images: a user must not
   * outlive its repository (a new repository of the same name would give it access again), and
   * when deleting a user fails the repository is still there to retry on. A DeleteRepository that
   * got no answer is read back: gone, the delete is answered as done. Once the repository is gone,
   * its users are listed again and deleted: a create whose user came after the first listing, and
   * whose last check (users.ts, repositoryStillThere) still found the repository, answered 200 for
   * a user the first listing missed. A create checking after the DeleteRepository rolls back
   * instead: either way no user outlives the repository.
   */
  async delete(account: string, group: string, name: string): Promise<DeletedRepository> {
    return this.oneAtATime(account, `${group}/${name}`, () => this.deleteNow(account, group, name));
  }

  private async deleteNow(account: string, group: string, name: string): Promise<DeletedRepository> {
    const session = await this.sessions.get(account);
    const { ecr } = session;
    const repositoryName = `${group}/${name}`;
    const { repository, tags } = await this.ownership.require(ecr, group, name);
    const groups = groupsFromPolicy(await readPolicy(ecr, repositoryName));
    const users = await this.users.deleteAll(account, session.iam, group, name);
    let deleted: EcrRepository | undefined;
    /** The read-back of a DeleteRepository that got no answer found the repository still there. */
    let stillThere = false;
    let sent = false;
    try {
      await applySteps([
        {
          what: `delete the repository ${repositoryName}`,
          apply: async () => {
            sent = true;
            deleted = (await ecr.send(new DeleteRepositoryCommand({ repositoryName, force: true }))).repository;
          },
          tookEffect: async () => {
            stillThere = await this.exists(ecr, repositoryName);
            return !stillThere;
          },
        },
      ]);
    } catch (err) {
      const problem = classifyAwsError(err) ?? new HttpProblem(500, 'An internal error occurred.', { cause: err });
      let detail = problem.message.replace(/\.?$/, '.');
      if (users.length) detail += ` Its users were deleted: ${users.join(', ')}.`;
      // It may have been deleted all the same (no answer or a 5xx, and no read-back): a user created
      // meanwhile would outlive it, and a retried DELETE would be a 404. Its users are listed again,
      // under a deadline of their own as an undo is (the request's may be what failed it).
      if (sent && !stillThere && mayHaveTakenEffect(err instanceof HttpProblem ? err.cause : err)) {
        detail += ' In case it was deleted, its IAM users were listed again: ';
        const own = Deadline.in(UNDO_DEADLINE_MS);
        try {
          const late = await withDeadline(own, () =>
            this.users.deleteLate(account, session.iam, group, name, [], `The repository ${repositoryName} may have been deleted`),
          );
          detail += late.length ? `${late.join(', ')}, created meanwhile, deleted too.` : 'none left.';
        } catch (lateErr) {
          detail += lateErr instanceof HttpProblem ? lateErr.message : 'that failed.';
        } finally {
          own.dispose();
        }
      }
      throw new HttpProblem(problem.statusCode, detail, { headers: problem.headers, cause: err });
    }
    const late = await this.users.deleteLate(account, session.iam, group, name, users);
    return { ...toRepository(deleted ?? repository, tags, groups), Users: [...users, ...late] };
  }

  async images(account: string, group: string, name: string): Promise<Image[]> {
    const { ecr } = await this.sessions.get(account);
    await this.ownership.require(ecr, group, name);
    const images: Image[] = [];
    for await (const page of paginateDescribeImages({ client: ecr, pageSize: 1000 }, { repositoryName: `${group}/${name}` })) {
      for (const d of page.imageDetails ?? []) images.push(toImage(d));
    }
    return images;
  }
}
