import type { App } from '@platform/http-common';
import { afterEach, describe, expect, it } from 'vitest';
import { SCAN_CONCURRENCY } from '../../src/aws/scans.js';
import { auth, newAccount, testApp } from '../support/app.js';
import { assumeRoleXml, StubAws, type StubRoute } from '../support/stub-aws.js';

/**
 * moto answers GetResources with nothing for ECR and every list in one page, so the scans'
 * paging, their concurrency bound and their per-repository failures are checked against canned
 * multi-page AWS answers (the real SDK clients and service code, only the HTTP layer replaced).
 */
let app: App | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

const account = newAccount();
const ORG = 'spindev';
const REPOS = Array.from({ length: 20 }, (_, i) => `grp/r${String(i).padStart(2, '0')}`);
const arn = (name: string) => `arn:aws:ecr:us-east-1:${account}:repository/${name}`;
const digest = (repo: string, n: number) => `sha256:${Buffer.from(`${repo}#${n}`).toString('hex').padEnd(64, '0').slice(0, 64)}`;
const HOUR = 3600;
const now = Math.floor(Date.now() / 1000);

/** GetResources in two pages (the org's repositories), tags included. */
const getResources: StubRoute = (params) => {
  const page = params.PaginationToken === 'p2' ? 2 : 1;
  const names = page === 1 ? REPOS.slice(0, 12) : REPOS.slice(12);
  return {
    json: {
      ResourceTagMappingList: names.map((n) => ({
        ResourceARN: arn(n),
        Tags: [
          { Key: 'Name', Value: n },
          { Key: 'spinup:org', Value: ORG },
          { Key: 'spinup:spaceid', Value: 'grp' },
        ],
      })),
      ...(page === 1 ? { PaginationToken: 'p2' } : { PaginationToken: '' }),
    },
  };
};

interface ImageSpec {
  pushedAt: number;
  scan?: { status: string; completedAt?: number };
}
/** Per repository: three images over two DescribeImages pages; the latest is on page 2 for odd repos. */
function imagesOf(repo: string): ImageSpec[][] {
  const i = REPOS.indexOf(repo);
  const old = { pushedAt: now - 100 * HOUR };
  const latest: ImageSpec = {
    pushedAt: now - HOUR,
    scan:
      i === 1
        ? { status: 'COMPLETE', completedAt: now - 2 * HOUR } // scanned recently: not due
        : i === 2
          ? { status: 'IN_PROGRESS' }
          : i === 3
            ? { status: 'COMPLETE', completedAt: now - 25 * HOUR } // scanned yesterday: due
            : undefined, // never scanned: due
  };
  return i % 2 ? [[old, old], [latest]] : [[latest, old], [old]];
}

function describeImages(delayMs: number, inFlight: { now: number; max: number }): StubRoute {
  return async (params) => {
    inFlight.now++;
    inFlight.max = Math.max(inFlight.max, inFlight.now);
    await new Promise((r) => setTimeout(r, delayMs));
    inFlight.now--;
    const repo = params.repositoryName as string;
    const pages = imagesOf(repo);
    const page = params.nextToken === 'i2' ? 1 : 0;
    return {
      json: {
        imageDetails: pages[page]!.map((spec, k) => {
          const n = page * 10 + k;
          const isLatest = spec.pushedAt === now - HOUR;
          return {
            registryId: account,
            repositoryName: repo,
            imageDigest: isLatest ? digest(repo, 0) : digest(repo, n + 1),
            imageTags: isLatest ? ['latest'] : [],
            imagePushedAt: spec.pushedAt,
            ...(spec.scan ? { imageScanStatus: { status: spec.scan.status } } : {}),
            ...(spec.scan?.completedAt
              ? { imageScanFindingsSummary: { imageScanCompletedAt: spec.scan.completedAt, findingSeverityCounts: {} } }
              : {}),
          };
        }),
        ...(page === 0 ? { nextToken: 'i2' } : {}),
      },
    };
  };
}

async function stubbed(routes: Record<string, StubRoute>) {
  const stub = new StubAws({ AssumeRole: () => assumeRoleXml(), GetResources: getResources, ...routes });
  app = await testApp({
    org: ORG,
    listStrategy: 'tagging',
    aws: { endpoint: 'http://127.0.0.1:9', requestHandler: stub, maxAttempts: 1 },
  });
  return { stub, app };
}

describe('GET /scanRepositories', () => {
  it('lists every page of repositories, finds the latest image over every page, at most SCAN_CONCURRENCY at a time', async () => {
    const inFlight = { now: 0, max: 0 };
    const started: Record<string, unknown>[] = [];
    const { stub, app } = await stubbed({
      DescribeImages: describeImages(15, inFlight),
      StartImageScan: (params) => {
        started.push(params);
        if (params.repositoryName === 'grp/r05') return { awsError: 'AccessDeniedException', message: 'denied' };
        if (params.repositoryName === 'grp/r06') return { awsError: 'UnsupportedImageTypeException', message: 'not scannable' };
        return { json: { imageScanStatus: { status: 'IN_PROGRESS' } } };
      },
    });
    const res = await app.inject({ url: `/v1/ecr/${account}/scanRepositories`, headers: auth });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(stub.count('GetResources')).toBe(2);
    expect(stub.count('DescribeImages')).toBe(40); // two pages per repository
    // r01 scanned 2 h ago and r02 in progress are not due; r05 and r06 failed; 16 started.
    const expected = REPOS.filter((r) => !['grp/r01', 'grp/r02', 'grp/r05', 'grp/r06'].includes(r));
    expect(Object.keys(body.repositories).sort()).toEqual(expected);
    for (const r of expected) expect(body.repositories[r]).toEqual([digest(r, 0)]);
    expect(body.message).toBe(`Scan initiated for ${expected.length} images`);
    expect(Object.keys(body.errors).sort()).toEqual(['grp/r05', 'grp/r06']);
    expect(body.errors['grp/r05']).toMatch(/AccessDeniedException/);
    expect(started.every((p) => (p.imageId as { imageDigest: string }).imageDigest === digest(p.repositoryName as string, 0))).toBe(true);
    // The documented bound (README: at most 8 repositories at a time), not just whatever the constant says.
    expect(SCAN_CONCURRENCY).toBe(8);
    expect(inFlight.max).toBeLessThanOrEqual(8);
    expect(inFlight.max).toBeGreaterThan(1);
  });
});

describe('GET /scanFindings', () => {
  it('merges every findings page, skips never-scanned and empty repositories, and fails as a whole on other errors', async () => {
    const findingsPage = (params: Record<string, unknown>) => {
      const repo = params.repositoryName as string;
      if (repo === 'grp/r04') return { awsError: 'ScanNotFoundException', message: 'never scanned' };
      const second = params.nextToken === 'f2';
      return {
        json: {
          registryId: account,
          repositoryName: repo,
          imageId: params.imageId,
          imageScanStatus: { status: 'COMPLETE', description: 'done' },
          imageScanFindings: {
            imageScanCompletedAt: now - HOUR,
            findingSeverityCounts: { HIGH: 2 },
            findings: [{ name: second ? 'CVE-2' : 'CVE-1', severity: 'HIGH', attributes: [{ key: 'package_name', value: 'openssl' }] }],
          },
          ...(second ? {} : { nextToken: 'f2' }),
        },
      };
    };
    const inFlight = { now: 0, max: 0 };
    const images = describeImages(0, inFlight);
    const { app } = await stubbed({
      DescribeImages: (params, call, nth) =>
        params.repositoryName === 'grp/r07' ? { json: { imageDetails: [] } } : images(params, call, nth),
      DescribeImageScanFindings: findingsPage,
    });
    const res = await app.inject({ url: `/v1/ecr/${account}/scanFindings`, headers: auth });
    expect(res.statusCode).toBe(200);
    const body = res.json<
      {
        RepositoryName: string;
        ImageId: { ImageDigest: string };
        ImageScanFindings: { Findings: { Name: string }[] };
      }[]
    >();
    expect(body.map((b) => b.RepositoryName)).toEqual(REPOS.filter((r) => r !== 'grp/r04' && r !== 'grp/r07'));
    for (const b of body) {
      expect(b.ImageId.ImageDigest).toBe(digest(b.RepositoryName, 0));
      expect(b.ImageScanFindings.Findings.map((f) => f.Name)).toEqual(['CVE-1', 'CVE-2']);
    }
    await app.close();

    const failing = await stubbed({
      DescribeImages: describeImages(0, inFlight),
      DescribeImageScanFindings: (params) =>
        params.repositoryName === 'grp/r09' ? { awsError: 'ServerException', message: 'boom', status: 500 } : findingsPage(params),
    });
    const res2 = await failing.app.inject({ url: `/v1/ecr/${account}/scanFindings`, headers: auth });
    expect(res2.statusCode).toBe(502);
  });
});

describe('GET .../images/{tag}', () => {
  it('answers every findings page merged, and scanError (not a failure) when AWS fails on the findings', async () => {
    const repo = { repositoryName: 'grp/r00', repositoryArn: arn('grp/r00'), registryId: account };
    const base = {
      DescribeRepositories: () => ({ json: { repositories: [repo] } }),
      ListTagsForResource: () => ({
        json: {
          tags: [
            { Key: 'Name', Value: 'grp/r00' },
            { Key: 'spinup:org', Value: ORG },
            { Key: 'spinup:spaceid', Value: 'grp' },
          ],
        },
      }),
      DescribeImages: () => ({
        json: { imageDetails: [{ repositoryName: 'grp/r00', imageDigest: digest('grp/r00', 0), imageTags: ['v1'], imagePushedAt: now }] },
      }),
    } satisfies Record<string, StubRoute>;
    const { app } = await stubbed({
      ...base,
      DescribeImageScanFindings: (params) => ({
        json: {
          imageScanFindings: {
            findingSeverityCounts: { LOW: 3 },
            findings: [{ name: params.nextToken ? 'CVE-B' : 'CVE-A' }],
            enhancedFindings: [{ awsAccountId: account, packageVulnerabilityDetails: { vulnerabilityId: 'CVE-E' } }],
          },
          ...(params.nextToken ? {} : { nextToken: 'n2' }),
        },
      }),
    });
    const res = await app.inject({ url: `/v1/ecr/${account}/repositories/grp/r00/images/v1`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json().scanFindings.Findings.map((f: { Name: string }) => f.Name)).toEqual(['CVE-A', 'CVE-B']);
    expect(res.json().scanFindings.EnhancedFindings).toHaveLength(2);
    expect(res.json().scanFindings.EnhancedFindings[0]).toEqual({
      AwsAccountId: account,
      PackageVulnerabilityDetails: { VulnerabilityId: 'CVE-E' },
    });
    await app.close();

    const throttled = await stubbed({
      ...base,
      DescribeImageScanFindings: () => ({ awsError: 'ThrottlingException', message: 'slow down' }),
    });
    const res2 = await throttled.app.inject({ url: `/v1/ecr/${account}/repositories/grp/r00/images/v1`, headers: auth });
    expect(res2.statusCode).toBe(200);
    expect(res2.json().scanError).toMatch(/^Unable to retrieve scan findings: AWS is throttling/);
  });
});
