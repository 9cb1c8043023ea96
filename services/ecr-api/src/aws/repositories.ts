import {
  CreateRepositoryCommand,
  DeleteRepositoryCommand,
  DescribeRepositoriesCommand,
  ListTagsForResourceCommand,
  paginateDescribeImages,
  paginateDescribeRepositories,
  PutImageScanningConfigurationCommand,
  TagResourceCommand,
  type ECRClient,
  type ImageDetail,
  type Repository as EcrRepository,
  type Tag as EcrTag,
} from '@aws-sdk/client-ecr';
import { paginateGetResources, type ResourceGroupsTaggingAPIClient } from '@aws-sdk/client-resource-groups-tagging-api';
import { badRequest, HttpProblem } from '@platform/http-common';
import type { ListStrategy } from '../config.js';
import type { Tag } from '../schemas/common.js';
import type { Image } from '../schemas/image.js';
import { MAX_REPOSITORY_NAME, type Repository } from '../schemas/repository.js';
import type { AccountSessions } from './credentials.js';

export const ORG_TAG = 'spinup:org';
export const GROUP_TAG = 'spinup:spaceid';
export const NAME_TAG = 'Name';
const RESERVED_TAGS = new Set([ORG_TAG, GROUP_TAG, NAME_TAG]);

/** Time as the original's Go JSON wrote it: RFC 3339, fractional seconds only when there are some. */
export function rfc3339(date: Date | undefined): string | undefined {
  return date ? date.toISOString().replace('.000Z', 'Z') : undefined;
}

/**
 * The caller's tags without the ones the service owns, duplicates resolved to the last value,
 * then the service's own: Name, spinup:org and spinup:spaceid (the original's order).
 */
export function normalizeTags(org: string, group: string, repository: string, tags: Tag[] = []): Tag[] {
  return [...userTags(tags), { Key: NAME_TAG, Value: repository }, { Key: ORG_TAG, Value: org }, { Key: GROUP_TAG, Value: group }];
}

function userTags(tags: Tag[]): Tag[] {
  const byKey = new Map<string, string>();
  for (const t of tags) if (!RESERVED_TAGS.has(t.Key)) byKey.set(t.Key, t.Value);
  return [...byKey].map(([Key, Value]) => ({ Key, Value }));
}

/** ECR's TagResource semantics: values of existing keys replaced in place, new keys appended. */
export function mergeTags(existing: Tag[], changes: Tag[]): Tag[] {
  const merged = new Map(existing.map((t) => [t.Key, t.Value]));
  for (const t of changes) merged.set(t.Key, t.Value);
  return [...merged].map(([Key, Value]) => ({ Key, Value }));
}

const toTags = (tags: EcrTag[] | undefined): Tag[] => (tags ?? []).map((t) => ({ Key: t.Key ?? '', Value: t.Value ?? '' }));

export function toRepository(r: EcrRepository, tags: Tag[]): Repository {
  return {
    CreatedAt: rfc3339(r.createdAt) ?? '',
    EncryptionType: r.encryptionConfiguration?.encryptionType ?? '',
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
export function repositoryNameFromArn(arn: string): string | undefined {
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
}

export interface UpdateInput {
  scanOnPush?: boolean;
  tags?: Tag[];
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping the order of `items`. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * ECR repositories of one organisation, in any account the service can assume its role in.
 * The service enforces ownership itself: it creates repositories only with its org tags, lists
 * only repositories carrying them, and reads a repository's tags before anything else it does to
 * it, answering 404 (the same 404 as for a missing one) when the org or group does not match.
 */
export class RepositoryStore {
  constructor(
    private readonly sessions: AccountSessions,
    private readonly org: string,
    private readonly listStrategy: ListStrategy,
  ) {}

  private notFound(group: string, name: string): HttpProblem {
    return new HttpProblem(404, `Repository ${group}/${name} not found.`);
  }

  /** The repository and its tags, when it exists and belongs to this org and group; 404 otherwise. */
  private async owned(ecr: ECRClient, group: string, name: string): Promise<{ repository: EcrRepository; tags: Tag[] }> {
    const repositoryName = `${group}/${name}`;
    try {
      const out = await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [repositoryName] }));
      const repository = out.repositories?.find((r) => r.repositoryName === repositoryName);
      if (!repository?.repositoryArn) throw this.notFound(group, name);
      const tags = toTags((await ecr.send(new ListTagsForResourceCommand({ resourceArn: repository.repositoryArn }))).tags);
      if (!this.isOwned(repositoryName, tags, group)) throw this.notFound(group, name);
      return { repository, tags };
    } catch (err) {
      if ((err as Error).name === 'RepositoryNotFoundException') throw this.notFound(group, name);
      throw err;
    }
  }

  /**
   * Whether a repository is this org's and addressable here: tagged with the org, and named
   * `{group}/{name}` where `{group}` is its spinup:spaceid tag. The same rule as GET's, so every
   * listed name can be fetched, and nothing listed answers 404.
   */
  private isOwned(repositoryName: string, tags: Tag[], group?: string): boolean {
    const tag = (key: string) => tags.find((t) => t.Key === key)?.Value;
    const spaceId = tag(GROUP_TAG);
    const [prefix, name, ...rest] = repositoryName.split('/');
    return (
      tag(ORG_TAG) === this.org &&
      spaceId !== undefined &&
      prefix === spaceId &&
      name !== undefined &&
      rest.length === 0 &&
      (group === undefined || spaceId === group)
    );
  }

  /** Names of this org's repositories in the account, optionally of one group only, sorted. */
  async list(account: string, group?: string): Promise<string[]> {
    const { ecr, tagging } = await this.sessions.get(account);
    const names = this.listStrategy === 'tagging' ? await this.listByTags(tagging, group) : await this.listByDescribe(ecr, group);
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
        if (name && this.isOwned(name, toTags(r.Tags), group)) names.push(name);
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
      try {
        const tags = toTags((await ecr.send(new ListTagsForResourceCommand({ resourceArn: r.repositoryArn }))).tags);
        return this.isOwned(r.repositoryName!, tags, group) ? r.repositoryName! : undefined;
      } catch (err) {
        if ((err as Error).name === 'RepositoryNotFoundException') return undefined; // deleted meanwhile
        throw err;
      }
    });
    return owned.filter((n): n is string => n !== undefined);
  }

  async create(account: string, group: string, input: CreateInput): Promise<Repository> {
    const repositoryName = `${group}/${input.name}`;
    if (repositoryName.length > MAX_REPOSITORY_NAME) {
      throw badRequest(`The repository name ${repositoryName} is longer than ${MAX_REPOSITORY_NAME} characters.`, [
        { field: 'body.RepositoryName', message: `makes the repository name longer than ${MAX_REPOSITORY_NAME} characters` },
      ]);
    }
    const tags = normalizeTags(this.org, group, repositoryName, input.tags);
    const { ecr } = await this.sessions.get(account);
    const out = await ecr.send(
      new CreateRepositoryCommand({
        repositoryName,
        imageTagMutability: input.imageTagMutability,
        imageScanningConfiguration: { scanOnPush: input.scanOnPush },
        encryptionConfiguration:
          input.encryption.type === 'KMS'
            ? { encryptionType: 'KMS', ...(input.encryption.kmsKey ? { kmsKey: input.encryption.kmsKey } : {}) }
            : { encryptionType: 'AES256' },
        tags,
      }),
    );
    if (!out.repository) throw new HttpProblem(502, 'AWS answered CreateRepository without a repository.');
    return toRepository(out.repository, tags);
  }

  async get(account: string, group: string, name: string): Promise<Repository> {
    const { ecr } = await this.sessions.get(account);
    const { repository, tags } = await this.owned(ecr, group, name);
    return toRepository(repository, tags);
  }

  async update(account: string, group: string, name: string, input: UpdateInput): Promise<Repository> {
    const { ecr } = await this.sessions.get(account);
    const { repository, tags } = await this.owned(ecr, group, name);
    const repositoryName = `${group}/${name}`;
    let updated = repository;
    if (input.scanOnPush !== undefined) {
      const out = await ecr.send(
        new PutImageScanningConfigurationCommand({ repositoryName, imageScanningConfiguration: { scanOnPush: input.scanOnPush } }),
      );
      updated = { ...updated, imageScanningConfiguration: out.imageScanningConfiguration ?? { scanOnPush: input.scanOnPush } };
    }
    let merged = tags;
    const changes = userTags(input.tags ?? []);
    if (changes.length) {
      await ecr.send(new TagResourceCommand({ resourceArn: repository.repositoryArn, tags: changes }));
      merged = mergeTags(tags, changes);
    }
    return toRepository(updated, merged);
  }

  async delete(account: string, group: string, name: string): Promise<Repository> {
    const { ecr } = await this.sessions.get(account);
    const { repository, tags } = await this.owned(ecr, group, name);
    const out = await ecr.send(new DeleteRepositoryCommand({ repositoryName: `${group}/${name}`, force: true }));
    return toRepository(out.repository ?? repository, tags);
  }

  async images(account: string, group: string, name: string): Promise<Image[]> {
    const { ecr } = await this.sessions.get(account);
    await this.owned(ecr, group, name);
    const images: Image[] = [];
    for await (const page of paginateDescribeImages({ client: ecr, pageSize: 1000 }, { repositoryName: `${group}/${name}` })) {
      for (const d of page.imageDetails ?? []) images.push(toImage(d));
    }
    return images;
  }
}
