import { paginateDescribeImages, StartImageScanCommand, type ECRClient, type ImageDetail } from '@aws-sdk/client-ecr';
import { Readable } from 'node:stream';
import type { RepositoryFindings, ScanStarted } from '../schemas/image.js';
import { currentDeadline, withDeadline } from './deadline.js';
import type { AccountSessions } from './credentials.js';
import { classifyAwsError } from './errors.js';
import { describeFindings } from './findings.js';
import { mapLimit } from './map-limit.js';
import type { RepositoryStore } from './repositories.js';

/** Repositories worked on at once: bounds the ECR calls in flight per request (ECR throttles per account). */
export const SCAN_CONCURRENCY = 8;
/** scanFindings: repositories fetched ahead of the one being written (their findings are held). */
const FINDINGS_WINDOW = 16;
/** scanFindings: an answer up to this size (JSON text) is answered whole; a larger one is streamed. */
const FINDINGS_BUFFER_BYTES = 4 * 1024 * 1024;
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
   * The findings of each repository's latest image, every page of them, as the JSON text of the
   * answer. Repositories without images or whose latest image was never scanned are left out; any
   * other AWS failure fails the request (a partial list would look complete).
   *
   * Memory is bounded, not proportional to the org: repositories are worked on in name order, at
   * most SCAN_CONCURRENCY at a time and at most FINDINGS_WINDOW ahead of the one being written,
   * and each is turned into JSON text as soon as it is its turn. An answer that fits in
   * FINDINGS_BUFFER_BYTES is answered whole (a failure is then an ordinary error answer); a larger
   * one is streamed from there on, and a failure after that point cuts the connection, so the
   * client sees a broken body, never a complete-looking list. (Before, every repository's
   * findings were held at once: 200 repositories with 1,000 findings each exhausted the heap.)
   */
  async findingsJson(account: string): Promise<string | Readable> {
    const names = await this.repositories.list(account);
    const { ecr } = await this.sessions.get(account);
    const deadline = currentDeadline();
    const one = (name: string) => {
      const work = () => this.repositoryFindings(ecr, account, name);
      return deadline ? withDeadline(deadline, work) : work();
    };
    const slots = new Array<Promise<RepositoryFindings | undefined> | undefined>(names.length);
    let inFlight = 0;
    let started = 0;
    let written = 0;
    const startMore = () => {
      while (inFlight < SCAN_CONCURRENCY && started < names.length && started < written + FINDINGS_WINDOW) {
        const slot = one(names[started]!);
        slots[started++] = slot;
        inFlight++;
        slot.then(
          () => {
            inFlight--;
            startMore();
          },
          () => inFlight--, // the failure is thrown where the slot is awaited
        );
      }
    };
    startMore();
    async function* parts(): AsyncGenerator<string> {
      yield '[';
      let first = true;
      for (let i = 0; i < names.length; i++) {
        const found = await slots[i];
        slots[i] = undefined;
        written = i + 1;
        startMore();
        if (found) {
          yield (first ? '' : ',') + JSON.stringify(found);
          first = false;
        }
      }
      yield ']';
    }
    const it = parts();
    const head: string[] = [];
    let size = 0;
    for (;;) {
      const next = await it.next();
      if (next.done) return head.join('');
      head.push(next.value);
      size += next.value.length;
      if (size > FINDINGS_BUFFER_BYTES) break;
    }
    const stream = Readable.from(
      (async function* () {
        yield head.splice(0).join('');
        yield* it;
      })(),
      { objectMode: false },
    );
    // The deadline passing or the service closing cuts the answer at once while repositories are
    // still to be read (they can no longer be): not only once the client has drained what was
    // read before, which a slow client could make outlast the shutdown's grace.
    const signal = deadline?.signal;
    if (signal) {
      const cut = () => {
        if (started < names.length || inFlight > 0) stream.destroy(signal.reason as Error);
      };
      signal.addEventListener('abort', cut, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', cut));
    }
    return stream;
  }

  private async repositoryFindings(ecr: ECRClient, account: string, repositoryName: string): Promise<RepositoryFindings | undefined> {
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
  }
}
