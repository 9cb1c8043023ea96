import { paginateDescribeImages, StartImageScanCommand, type ECRClient, type ImageDetail } from '@aws-sdk/client-ecr';
import type { RepositoryFindings, ScanStarted } from '../schemas/image.js';
import type { AccountSessions } from './credentials.js';
import { classifyAwsError } from './errors.js';
import { describeFindings } from './findings.js';
import { mapLimit } from './map-limit.js';
import type { RepositoryStore } from './repositories.js';

/** Repositories worked on at once: bounds the ECR calls in flight per request (ECR throttles per account). */
export const SCAN_CONCURRENCY = 8;
/** Basic scanning allows one scan per image per 24 hours. */
const RESCAN_AFTER_MS = 24 * 3600_000;

/** The repository or image went away while we worked on it, or the image was never scanned. */
const GONE = new Set(['RepositoryNotFoundException', 'ImageNotFoundException']);

/** The most recently pushed image of a repository, over every DescribeImages page. */
async function latestImage(ecr: ECRClient, repositoryName: string): Promise<ImageDetail | undefined> {
  let latest: ImageDetail | undefined;
  for await (const page of paginateDescribeImages({ client: ecr, pageSize: 1000 }, { repositoryName })) {
    for (const d of page.imageDetails ?? []) {
      const t = d.imagePushedAt?.getTime() ?? 0;
      const best = latest?.imagePushedAt?.getTime() ?? -1;
      // Ties (same second) go to the larger digest, so the choice does not depend on page order.
      if (t > best || (t === best && (d.imageDigest ?? '') > (latest?.imageDigest ?? ''))) latest = d;
    }
  }
  return latest;
}

/** The original's messages, except that failed repositories are never summed up as "already scanned". */
function summary(started: number, failed: number): string {
  if (started > 0) return `Scan initiated for ${started} images`;
  if (failed === 0) return 'All images already scanned in the past 24 hours';
  return `No scan initiated; ${failed} ${failed === 1 ? 'repository' : 'repositories'} failed (see errors)`;
}

/**
 * Scans of the latest image of each of this org's repositories in an account: every repository is
 * listed (paged to the end, org-filtered), then handled at most SCAN_CONCURRENCY at a time.
 */
export class ScanStore {
  constructor(
    private readonly sessions: AccountSessions,
    private readonly repositories: RepositoryStore,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Starts a scan of each repository's latest image unless it was scanned in the past 24 hours or
   * a scan is under way; never-scanned images are scanned too (the original skipped them). A
   * repository whose scan cannot be started is reported under `errors`; the others still are.
   */
  async start(account: string): Promise<ScanStarted> {
    const names = await this.repositories.list(account);
    const { ecr } = await this.sessions.get(account);
    const results = await mapLimit(names, SCAN_CONCURRENCY, async (repositoryName) => {
      try {
        const image = await latestImage(ecr, repositoryName);
        if (!image?.imageDigest || !this.due(image)) return undefined;
        await ecr.send(new StartImageScanCommand({ repositoryName, imageId: { imageDigest: image.imageDigest } }));
        return { started: image.imageDigest };
      } catch (err) {
        const name = (err as Error).name;
        // LimitExceededException: the image's one scan of the day was already used.
        if (GONE.has(name) || name === 'LimitExceededException') return undefined;
        const problem = classifyAwsError(err);
        if (!problem) throw err;
        return { error: problem.message };
      }
    });
    const repositories: Record<string, string[]> = {};
    const errors: Record<string, string> = {};
    results.forEach((r, i) => {
      const name = names[i]!;
      if (r?.started) repositories[name] = [r.started];
      if (r?.error) errors[name] = r.error;
    });
    return {
      message: summary(Object.keys(repositories).length, Object.keys(errors).length),
      repositories,
      ...(Object.keys(errors).length ? { errors } : {}),
    };
  }

  private due(image: ImageDetail): boolean {
    const status = image.imageScanStatus?.status;
    if (status === 'IN_PROGRESS' || status === 'PENDING') return false;
    const completed = image.imageScanFindingsSummary?.imageScanCompletedAt?.getTime();
    return completed === undefined || this.now() - completed >= RESCAN_AFTER_MS;
  }

  /**
   * The findings of each repository's latest image, every page of them. Repositories without
   * images or whose latest image was never scanned are left out; any other AWS failure fails the
   * request (a partial list would look complete).
   */
  async findings(account: string): Promise<RepositoryFindings[]> {
    const names = await this.repositories.list(account);
    const { ecr } = await this.sessions.get(account);
    const results = await mapLimit(names, SCAN_CONCURRENCY, async (repositoryName): Promise<RepositoryFindings | undefined> => {
      try {
        const image = await latestImage(ecr, repositoryName);
        if (!image?.imageDigest) return undefined;
        const out = await describeFindings(ecr, repositoryName, { imageDigest: image.imageDigest });
        const tag = image.imageTags?.[0];
        return {
          ImageId: { ImageDigest: image.imageDigest, ...(tag ? { ImageTag: tag } : {}) },
          ImageScanFindings: out.findings,
          ImageScanStatus: { Description: out.status?.description, Status: out.status?.status },
          RegistryId: out.registryId ?? image.registryId ?? account,
          RepositoryName: repositoryName,
        };
      } catch (err) {
        const name = (err as Error).name;
        if (GONE.has(name) || name === 'ScanNotFoundException') return undefined;
        throw err;
      }
    });
    return results.filter((r): r is RepositoryFindings => r !== undefined);
  }
}
