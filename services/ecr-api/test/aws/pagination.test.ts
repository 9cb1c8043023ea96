import type { App } from '@platform/http-common';
import { afterEach, describe, expect, it } from 'vitest';
import type { ListStrategy } from '../../src/config.js';
import { auth, newAccount, testApp } from '../support/app.js';
import { assumeRoleXml, StubAws, type StubRoute } from '../support/stub-aws.js';

/**
 * moto answers every list in one page (it ignores maxResults) and returns nothing for ECR from the
 * tagging API, so the paging of each list is checked here against canned multi-page AWS answers.
 */
let app: App | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

const account = newAccount();
const ORG = 'spindev';
const arn = (name: string) => `arn:aws:ecr:us-east-1:${account}:repository/${name}`;
const ownedTags = (group: string, name: string) => [
  { Key: 'Name', Value: `${group}/${name}` },
  { Key: 'spinup:org', Value: ORG },
  { Key: 'spinup:spaceid', Value: group },
];

/** Answers page n (1-based) of `pages`, with a token to the next one. */
function paged<T>(pages: T[][], itemsKey: string, tokenKey: string, tokenName: string): StubRoute {
  return (params) => {
    const token = params[tokenName] as string | undefined;
    const n = token ? Number(token.replace('page-', '')) : 1;
    const next = n < pages.length ? { [tokenKey]: `page-${n + 1}` } : {};
    return { json: { [itemsKey]: pages[n - 1] ?? [], ...next } };
  };
}

async function stubbedApp(stub: StubAws, listStrategy: ListStrategy = 'tagging') {
  app = await testApp({ org: ORG, listStrategy, aws: { endpoint: 'http://127.0.0.1:9', requestHandler: stub, maxAttempts: 1 } });
  return app;
}

describe('paging to the end', () => {
  it('GET .../images returns the images of every DescribeImages page, in order', async () => {
    const pages = [1, 2, 3].map((p) =>
      Array.from({ length: p === 3 ? 1 : 2 }, (_, i) => ({
        registryId: account,
        repositoryName: 'grp/app',
        imageDigest: `sha256:${String(p * 10 + i).padStart(64, '0')}`,
        imageTags: [`v${p}.${i}`],
        imageSizeInBytes: 1000 + p,
        imagePushedAt: 1_700_000_000 + p,
        imageManifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactMediaType: 'application/vnd.oci.image.config.v1+json',
        imageScanStatus: { status: 'COMPLETE', description: 'The scan was completed successfully.' },
        imageScanFindingsSummary: {
          imageScanCompletedAt: 1_700_000_100,
          vulnerabilitySourceUpdatedAt: 1_690_000_000,
          findingSeverityCounts: { HIGH: p },
        },
      })),
    );
    const stub = new StubAws({
      AssumeRole: () => assumeRoleXml(),
      DescribeRepositories: () => ({
        json: { repositories: [{ repositoryName: 'grp/app', repositoryArn: arn('grp/app'), registryId: account }] },
      }),
      ListTagsForResource: () => ({ json: { tags: ownedTags('grp', 'app') } }),
      DescribeImages: paged(pages, 'imageDetails', 'nextToken', 'nextToken'),
    });
    const res = await (await stubbedApp(stub)).inject({ url: `/v1/ecr/${account}/repositories/grp/app/images`, headers: auth });
    expect(res.statusCode).toBe(200);
    const images = res.json<Record<string, unknown>[]>();
    expect(images.map((i) => i.ImageTags)).toEqual([['v1.0'], ['v1.1'], ['v2.0'], ['v2.1'], ['v3.0']]);
    expect(images[0]).toEqual({
      ArtifactMediaType: 'application/vnd.oci.image.config.v1+json',
      ImageDigest: `sha256:${'10'.padStart(64, '0')}`,
      ImageManifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
      ImagePushedAt: '2023-11-14T22:13:21Z',
      ImageScanFindingsSummary: {
        FindingSeverityCounts: { HIGH: 1 },
        ImageScanCompletedAt: '2023-11-14T22:15:00Z',
        VulnerabilitySourceUpdatedAt: '2023-07-22T04:26:40Z',
      },
      ImageScanStatus: { Description: 'The scan was completed successfully.', Status: 'COMPLETE' },
      ImageSizeInBytes: 1001,
      ImageTags: ['v1.0'],
      RegistryId: account,
      RepositoryName: 'grp/app',
    });
    const calls = stub.calls.filter((c) => c.operation === 'DescribeImages');
    expect(calls.map((c) => c.params.nextToken)).toEqual([undefined, 'page-2', 'page-3']);
    expect(calls.every((c) => c.params.repositoryName === 'grp/app' && c.params.maxResults === 1000)).toBe(true);
  });

  it('lists through every GetResources page, filtered by the org tag and the repository type', async () => {
    const mapping = (group: string, name: string, tags = ownedTags(group, name)) => ({ ResourceARN: arn(`${group}/${name}`), Tags: tags });
    const stub = new StubAws({
      AssumeRole: () => assumeRoleXml(),
      GetResources: paged(
        [
          [mapping('g1', 'zeta'), mapping('g2', 'alpha')],
          // Tagged for the org but filed under another group than its name: not addressable, not listed.
          [
            mapping('g3', 'stray', [
              { Key: 'spinup:org', Value: ORG },
              { Key: 'spinup:spaceid', Value: 'g1' },
            ]),
          ],
          [],
          [mapping('g1', 'beta')],
        ],
        'ResourceTagMappingList',
        'PaginationToken',
        'PaginationToken',
      ),
    });
    const res = await (await stubbedApp(stub)).inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(['g1/beta', 'g1/zeta', 'g2/alpha']);
    const calls = stub.calls.filter((c) => c.operation === 'GetResources');
    expect(calls).toHaveLength(4);
    expect(calls.map((c) => c.params.PaginationToken)).toEqual([undefined, 'page-2', 'page-3', 'page-4']);
    expect(calls[0]!.params).toMatchObject({
      ResourceTypeFilters: ['ecr:repository'],
      TagFilters: [{ Key: 'spinup:org', Values: [ORG] }],
      ResourcesPerPage: 100,
    });
    // One tagging query: no per-repository calls.
    expect(stub.calls.map((c) => c.operation).filter((op) => op !== 'GetResources' && op !== 'AssumeRole')).toEqual([]);
  });

  it('lists a group with the org and spaceid tag filters, through every page', async () => {
    const stub = new StubAws({
      AssumeRole: () => assumeRoleXml(),
      GetResources: paged(
        [[{ ResourceARN: arn('g1/b'), Tags: ownedTags('g1', 'b') }], [{ ResourceARN: arn('g1/a'), Tags: ownedTags('g1', 'a') }]],
        'ResourceTagMappingList',
        'PaginationToken',
        'PaginationToken',
      ),
    });
    const res = await (await stubbedApp(stub)).inject({ url: `/v1/ecr/${account}/repositories/g1`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(['g1/a', 'g1/b']);
    expect(stub.calls.filter((c) => c.operation === 'GetResources').map((c) => c.params.TagFilters)).toEqual([
      [
        { Key: 'spinup:org', Values: [ORG] },
        { Key: 'spinup:spaceid', Values: ['g1'] },
      ],
      [
        { Key: 'spinup:org', Values: [ORG] },
        { Key: 'spinup:spaceid', Values: ['g1'] },
      ],
    ]);
  });

  it('with --list-strategy describe, pages DescribeRepositories to the end and keeps the org-tagged ones', async () => {
    const repo = (name: string) => ({ repositoryName: name, repositoryArn: arn(name), registryId: account });
    const tags: Record<string, { Key: string; Value: string }[]> = {
      [arn('g1/a')]: ownedTags('g1', 'a'),
      [arn('g1/b')]: [
        { Key: 'spinup:org', Value: 'otherorg' },
        { Key: 'spinup:spaceid', Value: 'g1' },
      ],
      [arn('g2/c')]: ownedTags('g2', 'c'),
      [arn('g1/d')]: ownedTags('g1', 'd'),
    };
    const stub = new StubAws({
      AssumeRole: () => assumeRoleXml(),
      DescribeRepositories: paged([[repo('g1/a'), repo('g1/b')], [repo('g2/c')], [repo('g1/d')]], 'repositories', 'nextToken', 'nextToken'),
      ListTagsForResource: (params) => ({ json: { tags: tags[params.resourceArn as string] ?? [] } }),
    });
    const a = await stubbedApp(stub, 'describe');
    const all = await a.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
    expect(all.json()).toEqual(['g1/a', 'g1/d', 'g2/c']);
    expect(stub.count('DescribeRepositories')).toBe(3);
    expect(stub.calls.filter((c) => c.operation === 'DescribeRepositories').map((c) => c.params.maxResults)).toEqual([1000, 1000, 1000]);

    const before = stub.count('ListTagsForResource');
    const group = await a.inject({ url: `/v1/ecr/${account}/repositories/g2`, headers: auth });
    expect(group.json()).toEqual(['g2/c']);
    // Only the repositories named g2/... have their tags read.
    expect(stub.count('ListTagsForResource') - before).toBe(1);
  });
});
