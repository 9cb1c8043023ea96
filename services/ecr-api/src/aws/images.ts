import { BatchDeleteImageCommand, DescribeImagesCommand } from '@aws-sdk/client-ecr';
import { HttpProblem } from '@platform/http-common';
import type { DeletedImageTag, ImageWithFindings } from '../schemas/image.js';
import type { AccountSessions } from './credentials.js';
import { classifyAwsError } from './errors.js';
import { describeFindings } from './findings.js';
import type { Ownership } from './ownership.js';
import { toImage } from './repositories.js';
import { IMAGE_MISSING } from './retried-deletes.js';

/** One image of a repository by tag: show it with its scan findings, or delete the tag. */
export class ImageStore {
  constructor(
    private readonly sessions: AccountSessions,
    private readonly ownership: Ownership,
  ) {}

  private notFound(group: string, name: string, tag: string): HttpProblem {
    return new HttpProblem(404, `Image ${group}/${name}:${tag} not found.`);
  }

  /**
   * DescribeImages for the tag, then its scan findings, every page. Findings that cannot be read
   * (never scanned, scan not found, scanning not allowed, AWS failing) do not fail the request:
   * the answer carries `scanError` instead, as the original's does.
   */
  async byTag(account: string, group: string, name: string, tag: string): Promise<ImageWithFindings> {
    const { ecr } = await this.sessions.get(account);
    await this.ownership.require(ecr, group, name);
    const repositoryName = `${group}/${name}`;
    let detail;
    try {
      detail = (await ecr.send(new DescribeImagesCommand({ repositoryName, imageIds: [{ imageTag: tag }] }))).imageDetails?.[0];
    } catch (err) {
      if ((err as Error).name === 'ImageNotFoundException') throw this.notFound(group, name, tag);
      throw err;
    }
    if (!detail) throw this.notFound(group, name, tag);
    const imageDetail = toImage(detail);
    try {
      const imageId = detail.imageDigest ? { imageDigest: detail.imageDigest } : { imageTag: tag };
      const { findings } = await describeFindings(ecr, repositoryName, imageId);
      return { imageDetail, scanFindings: findings };
    } catch (err) {
      const problem = classifyAwsError(err);
      if (!problem) throw err;
      return { imageDetail, scanError: `Unable to retrieve scan findings: ${problem.message}` };
    }
  }

  /**
   * BatchDeleteImage of the tag: the image itself goes only when no other tag refers to it (AWS's
   * rule). A tag that does not exist is a 404 (the original answered 200 with a failure listed).
   */
  async deleteTag(account: string, group: string, name: string, tag: string): Promise<DeletedImageTag> {
    const { ecr } = await this.sessions.get(account);
    await this.ownership.require(ecr, group, name);
    const out = await ecr.send(new BatchDeleteImageCommand({ repositoryName: `${group}/${name}`, imageIds: [{ imageTag: tag }] }));
    const failures = (out.failures ?? []).map((f) => ({
      ...(f.failureCode !== undefined ? { FailureCode: f.failureCode } : {}),
      ...(f.failureReason !== undefined ? { FailureReason: f.failureReason } : {}),
      ImageId: { ImageDigest: f.imageId?.imageDigest, ImageTag: f.imageId?.imageTag },
    }));
    const deleted = (out.imageIds ?? []).map((i) => ({ ImageDigest: i.imageDigest, ImageTag: i.imageTag }));
    if (!deleted.length) {
      const failure = out.failures?.[0];
      if (!failure || IMAGE_MISSING.has(failure.failureCode ?? '')) throw this.notFound(group, name, tag);
      throw new HttpProblem(
        409,
        `Could not delete ${group}/${name}:${tag}: ${failure.failureCode ?? 'failure'} ${failure.failureReason ?? ''}`.trim(),
      );
    }
    return { Failures: failures, ImageIds: deleted };
  }
}
