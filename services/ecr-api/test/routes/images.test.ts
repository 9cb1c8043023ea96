import { DescribeImagesCommand, PutImageCommand, StartImageScanCommand, type ECRClient } from '@aws-sdk/client-ecr';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, directEcr, manifest, newAccount, otherOrgsRepository, testApp, createGrpApp } from '../support/app.js';

const ORG = 'spindev';
let app: App;
let account: string;
let ecr: ECRClient;

const url = (tag: string, group = 'grp', name = 'app') => `/v1/ecr/${account}/repositories/${group}/${name}/images/${tag}`;
const tagsInAws = async (repositoryName = 'grp/app') =>
  ((await ecr.send(new DescribeImagesCommand({ repositoryName }))).imageDetails ?? []).flatMap((d) => d.imageTags ?? []).sort();

beforeAll(async () => {
  app = await testApp({ org: ORG });
  account = newAccount();
  ecr = await directEcr(account);
  await createGrpApp(app, account);
  await ecr.send(new PutImageCommand({ repositoryName: 'grp/app', imageManifest: manifest(1), imageTag: 'v1' }));
  await ecr.send(new PutImageCommand({ repositoryName: 'grp/app', imageManifest: manifest(2), imageTag: 'v2' }));
  await ecr.send(new PutImageCommand({ repositoryName: 'grp/app', imageManifest: manifest(2), imageTag: 'latest' }));
  // Another org's repository with an image.
  await otherOrgsRepository(ecr, 'grp', 'theirs', 3);
});
afterAll(() => app?.close());

describe('GET .../images/{tag}', () => {
  it('answers the image and, for a never-scanned image, scanError instead of failing', async () => {
    const res = await app.inject({ url: url('v1'), headers: auth });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(Object.keys(body)).toEqual(['imageDetail', 'scanError']);
    expect(body.imageDetail).toMatchObject({
      ImageTags: ['v1'],
      RepositoryName: 'grp/app',
      RegistryId: account,
      ImageDigest: expect.stringMatching(/^sha256:/),
    });
    expect(body.scanError).toMatch(/^Unable to retrieve scan findings: Not found: Image scan does not exist/);
  });

  it('answers the findings of a scanned image', async () => {
    await ecr.send(new StartImageScanCommand({ repositoryName: 'grp/app', imageId: { imageTag: 'v2' } }));
    const res = await app.inject({ url: url('v2'), headers: auth });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.scanError).toBeUndefined();
    expect(body.imageDetail.ImageTags.sort()).toEqual(['latest', 'v2']);
    expect(body.scanFindings).toMatchObject({
      FindingSeverityCounts: { HIGH: 1 },
      ImageScanCompletedAt: expect.stringMatching(/Z$/),
      Findings: [
        {
          Name: 'CVE-9999-9999',
          Severity: 'HIGH',
          Uri: expect.stringContaining('CVE-9999-9999'),
          Attributes: expect.arrayContaining([{ Key: 'package_name', Value: 'moto_fake' }]),
        },
      ],
    });
  });

  it('answers 404 for a tag that does not exist, and for a repository of another org', async () => {
    const missing = await app.inject({ url: url('v9'), headers: auth });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().detail).toBe('Image grp/app:v9 not found.');
    const theirs = await app.inject({ url: url('v1', 'grp', 'theirs'), headers: auth });
    expect(theirs.statusCode).toBe(404);
    expect(theirs.json().detail).toBe('Repository grp/theirs not found.');
  });

  it('answers 400 for a tag that is not a tag', async () => {
    const res = await app.inject({ url: url('-bad'), headers: auth });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors[0].field).toBe('params.tag');
  });
});

describe('DELETE .../images/{tag}', () => {
  it('deletes the tag; the image stays while another tag refers to it', async () => {
    const res = await app.inject({ method: 'DELETE', url: url('latest'), headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ Failures: [], ImageIds: [{ ImageDigest: expect.stringMatching(/^sha256:/), ImageTag: 'latest' }] });
    expect(await tagsInAws()).toEqual(['v1', 'v2']);
  });

  it('deletes the image with its last tag', async () => {
    expect((await app.inject({ method: 'DELETE', url: url('v1'), headers: auth })).statusCode).toBe(200);
    expect(await tagsInAws()).toEqual(['v2']);
    expect((await ecr.send(new DescribeImagesCommand({ repositoryName: 'grp/app' }))).imageDetails).toHaveLength(1);
  });

  it('answers 404 for a tag that does not exist (the original answered 200)', async () => {
    const res = await app.inject({ method: 'DELETE', url: url('v1'), headers: auth });
    expect(res.statusCode).toBe(404);
    expect(res.json().detail).toBe('Image grp/app:v1 not found.');
  });

  it("answers 404 for another org's repository and deletes nothing there", async () => {
    const res = await app.inject({ method: 'DELETE', url: url('v1', 'grp', 'theirs'), headers: auth });
    expect(res.statusCode).toBe(404);
    expect(await tagsInAws('grp/theirs')).toEqual(['v1']);
  });
});
