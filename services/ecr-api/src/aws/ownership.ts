import {
  DescribeRepositoriesCommand,
  ListTagsForResourceCommand,
  type ECRClient,
  type Repository,
  type Tag as EcrTag,
} from '@aws-sdk/client-ecr';
import { HttpProblem } from '@platform/http-common';
import type { Tag } from '../schemas/common.js';

export const ORG_TAG = 'spinup:org';
export const GROUP_TAG = 'spinup:spaceid';
export const NAME_TAG = 'Name';

export const toTags = (tags: EcrTag[] | undefined): Tag[] => (tags ?? []).map((t) => ({ Key: t.Key ?? '', Value: t.Value ?? '' }));

function repositoryNotFound(group: string, name: string, cause?: unknown): HttpProblem {
  return new HttpProblem(404, `Repository ${group}/${name} not found.`, cause === undefined ? {} : { cause });
}

/**
 * The service's own ownership rule, applied before anything it does to a repository: a repository
 * is this org's and addressable here when it is tagged with the org and named `{group}/{name}`
 * where `{group}` is its spinup:spaceid tag. Anything else is the same 404 as a missing one.
 */
export class Ownership {
  constructor(readonly org: string) {}

  isOwned(repositoryName: string, tags: Tag[], group?: string): boolean {
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

  /** The repository and its tags (DescribeRepositories + ListTagsForResource), or a 404. */
  async require(ecr: ECRClient, group: string, name: string): Promise<{ repository: Repository & { repositoryArn: string }; tags: Tag[] }> {
    const repositoryName = `${group}/${name}`;
    try {
      const out = await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [repositoryName] }));
      const repository = out.repositories?.find((r) => r.repositoryName === repositoryName);
      const arn = repository?.repositoryArn;
      if (!repository || !arn) throw repositoryNotFound(group, name);
      const tags = toTags((await ecr.send(new ListTagsForResourceCommand({ resourceArn: arn }))).tags);
      if (!this.isOwned(repositoryName, tags, group)) throw repositoryNotFound(group, name);
      return { repository: { ...repository, repositoryArn: arn }, tags };
    } catch (err) {
      // The cause tells a repository that does not exist from one that is not this org's and group's.
      if ((err as Error).name === 'RepositoryNotFoundException') throw repositoryNotFound(group, name, err);
      throw err;
    }
  }
}
