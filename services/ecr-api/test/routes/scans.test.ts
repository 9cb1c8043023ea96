import { DescribeImageScanFindingsCommand, PutImageCommand, type ECRClient } from '@aws-sdk/client-ecr';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, directEcr, manifest, newAccount, otherOrgsRepository, testApp } from '../support/app.js';

const ORG = 'spindev';
let app: App;
let account: string;
let ecr: ECRClient;

const scanned = async (repositoryName: string) => {
  try {
    await ecr.send(new DescribeImageScanFindingsCommand({ repositoryName, imageId: { imageTag: 'v1' } }));
    return true;
  } catch (err) {
    if ((err as Error).name === 'ScanNotFoundException') return false;
    throw err;
  }
};

beforeAll(async () => {
  app = await testApp({ org: ORG });
  account = newAccount();
  ecr = await directEcr(account);
  let seed = 1;
  for (const [group, name] of [
    ['g1', 'api'],
    ['g2', 'web'],
    ['g2', 'empty'],
  ]) {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${account}/repositories/${group}`,
      headers: auth,
      payload: { RepositoryName: name },
    });
    expect(res.statusCode).toBe(200);
    if (name !== 'empty')
      await ecr.send(new PutImageCommand({ repositoryName: `${group}/${name}`, imageManifest: manifest(seed++), imageTag: 'v1' }));
  }
  // Another org's repository, with an image: never scanned nor reported by this org's service.
  await otherOrgsRepository(ecr, 'g1', 'theirs', 99);
});
afterAll(() => app?.close());

describe('scans', () => {
  it('GET /scanFindings skips never-scanned repositories instead of failing', async () => {
    const res = await app.inject({ url: `/v1/ecr/${account}/scanFindings`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual([]);
  });

  it("GET /scanRepositories starts a scan of each of the org's never-scanned latest images, and of no other org's", async () => {
    const res = await app.inject({ url: `/v1/ecr/${account}/scanRepositories`, headers: auth });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.message).toBe('Scan initiated for 2 images');
    expect(Object.keys(body.repositories).sort()).toEqual(['g1/api', 'g2/web']);
    expect(body.repositories['g1/api']).toEqual([expect.stringMatching(/^sha256:/)]);
    expect(body.errors).toBeUndefined();
    expect(await scanned('g1/api')).toBe(true);
    expect(await scanned('g2/web')).toBe(true);
    expect(await scanned('g1/theirs')).toBe(false);
  });

  it('GET /scanFindings answers the findings of each scanned repository, sorted by name', async () => {
    const res = await app.inject({ url: `/v1/ecr/${account}/scanFindings`, headers: auth });
    expect(res.statusCode).toBe(200);
    const body = res.json<Record<string, unknown>[]>();
    expect(body.map((f) => f.RepositoryName)).toEqual(['g1/api', 'g2/web']);
    expect(body[0]).toEqual({
      ImageId: { ImageDigest: expect.stringMatching(/^sha256:/), ImageTag: 'v1' },
      ImageScanFindings: expect.objectContaining({
        FindingSeverityCounts: { HIGH: 1 },
        Findings: [expect.objectContaining({ Name: 'CVE-9999-9999' })],
      }),
      ImageScanStatus: { Description: 'The scan was completed successfully.', Status: 'COMPLETE' },
      RegistryId: account,
      RepositoryName: 'g1/api',
    });
  });

  it('GET /scanRepositories again starts nothing: the images had their scan of the day', async () => {
    const res = await app.inject({ url: `/v1/ecr/${account}/scanRepositories`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ message: 'All images already scanned in the past 24 hours', repositories: {} });
  });

  it('HEAD /scanRepositories starts no scan: it is answered as an unknown method is', async () => {
    const other = newAccount();
    const otherEcr = await directEcr(other);
    const created = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${other}/repositories/g1`,
      headers: auth,
      payload: { RepositoryName: 'head' },
    });
    expect(created.statusCode).toBe(200);
    await otherEcr.send(new PutImageCommand({ repositoryName: 'g1/head', imageManifest: manifest(42), imageTag: 'v1' }));

    const url = `/v1/ecr/${other}/scanRepositories`;
    const head = await app.inject({ method: 'HEAD', url, headers: auth });
    const scannedThere = await otherEcr
      .send(new DescribeImageScanFindingsCommand({ repositoryName: 'g1/head', imageId: { imageTag: 'v1' } }))
      .then(
        () => true,
        (err: Error) => (err.name === 'ScanNotFoundException' ? false : Promise.reject(err)),
      );
    expect(scannedThere).toBe(false);
    const unknown = await app.inject({ method: 'PATCH', url, headers: auth });
    expect([404, 405]).toContain(head.statusCode);
    expect(head.statusCode).toBe(unknown.statusCode);
  });

  it('keeps HEAD for the GETs without side effects', async () => {
    expect(app.hasRoute({ method: 'HEAD', url: '/v1/ecr/:account/scanRepositories' })).toBe(false);
    for (const url of [
      '/v1/ecr/:account/scanFindings',
      '/v1/ecr/:account/repositories',
      '/v1/ecr/:account/repositories/:group/:name',
      '/v1/ecr/:account/repositories/:group/:name/images',
      '/v1/ecr/:account/repositories/:group/:name/users/:user',
    ])
      expect(app.hasRoute({ method: 'HEAD', url }), url).toBe(true);
  });

  it('answers 400 for a bad account', async () => {
    expect((await app.inject({ url: '/v1/ecr/123/scanFindings', headers: auth })).statusCode).toBe(400);
  });
});
