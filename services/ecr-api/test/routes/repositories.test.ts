import {
  DescribeImagesCommand,
  DescribeRepositoriesCommand,
  ListTagsForResourceCommand,
  PutImageCommand,
  type ECRClient,
} from '@aws-sdk/client-ecr';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, directEcr, manifest, newAccount, testApp } from '../support/app.js';

const ORG = 'spindev';
let app: App;
let account: string;
let ecr: ECRClient;

beforeAll(async () => {
  app = await testApp({ org: ORG });
  account = newAccount();
  ecr = await directEcr(account);
});
afterAll(() => app?.close());

const base = () => `/v1/ecr/${account}/repositories`;
const create = (group: string, body: Record<string, unknown>) =>
  app.inject({ method: 'POST', url: `${base()}/${group}`, headers: auth, payload: body });
const tagsOf = async (name: string) => {
  const repo = (await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [name] }))).repositories![0]!;
  return (await ecr.send(new ListTagsForResourceCommand({ resourceArn: repo.repositoryArn }))).tags;
};
const described = async (name: string) => (await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [name] }))).repositories![0]!;

describe('POST /v1/ecr/{account}/repositories/{group}', () => {
  it('creates {group}/{name} with AES256, the org tags and ScanOnPush, answering the original shape in order', async () => {
    const res = await create('spindev-00001', {
      RepositoryName: 'dasher',
      ScanOnPush: 'true',
      Tags: [
        { Key: 'CreatedBy', Value: 'santa' },
        { Key: 'spinup:spaceid', Value: 'spindev-99999' },
        { Key: 'spinup:org', Value: 'evilorg' },
        { Key: 'Name', Value: 'spoofed' },
      ],
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = res.json();
    expect(Object.keys(body)).toEqual([
      'CreatedAt',
      'EncryptionType',
      'Groups',
      'KmsKeyId',
      'ScanOnPush',
      'ImageTagMutability',
      'RegistryId',
      'RepositoryArn',
      'RepositoryName',
      'RepositoryUri',
      'Tags',
    ]);
    expect(body).toMatchObject({
      EncryptionType: 'AES256',
      KmsKeyId: '',
      ScanOnPush: 'true',
      ImageTagMutability: 'MUTABLE',
      RegistryId: account,
      RepositoryArn: `arn:aws:ecr:us-east-1:${account}:repository/spindev-00001/dasher`,
      RepositoryName: 'spindev-00001/dasher',
      RepositoryUri: `${account}.dkr.ecr.us-east-1.amazonaws.com/spindev-00001/dasher`,
    });
    expect(body.CreatedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$/);
    const expectedTags = [
      { Key: 'CreatedBy', Value: 'santa' },
      { Key: 'Name', Value: 'spindev-00001/dasher' },
      { Key: 'spinup:org', Value: ORG },
      { Key: 'spinup:spaceid', Value: 'spindev-00001' },
    ];
    expect(body.Tags).toEqual(expectedTags);

    // What AWS holds, not just what the service answered.
    expect(await tagsOf('spindev-00001/dasher')).toEqual(expect.arrayContaining(expectedTags));
    expect(await tagsOf('spindev-00001/dasher')).toHaveLength(4);
    const repo = await described('spindev-00001/dasher');
    expect(repo.imageScanningConfiguration?.scanOnPush).toBe(true);
    expect(repo.encryptionConfiguration?.encryptionType).toBe('AES256');
  });

  it('applies KMS encryption with a key, KMS with the AWS key, and tag immutability', async () => {
    const key = `arn:aws:kms:us-east-1:${account}:key/0b4c5a2e-1111-2222-3333-444455556666`;
    const withKey = await create('spindev-00001', { RepositoryName: 'kms-key', KmsKeyId: key, ImageTagMutability: 'IMMUTABLE' });
    expect(withKey.statusCode).toBe(200);
    expect(withKey.json()).toMatchObject({ EncryptionType: 'KMS', KmsKeyId: key, ImageTagMutability: 'IMMUTABLE', ScanOnPush: 'false' });
    expect((await described('spindev-00001/kms-key')).encryptionConfiguration).toEqual({ encryptionType: 'KMS', kmsKey: key });
    expect((await described('spindev-00001/kms-key')).imageTagMutability).toBe('IMMUTABLE');

    const awsKey = await create('spindev-00001', { RepositoryName: 'kms-default', EncryptionType: 'KMS', ScanOnPush: false });
    expect(awsKey.statusCode).toBe(200);
    expect(awsKey.json().EncryptionType).toBe('KMS');
    expect((await described('spindev-00001/kms-default')).encryptionConfiguration?.encryptionType).toBe('KMS');
  });

  it('answers 409 for a repository that already exists, and leaves it as it was', async () => {
    expect((await create('spindev-00002', { RepositoryName: 'prancer', Tags: [{ Key: 'v', Value: '1' }] })).statusCode).toBe(200);
    const res = await create('spindev-00002', { RepositoryName: 'prancer', Tags: [{ Key: 'v', Value: '2' }] });
    expect(res.statusCode).toBe(409);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json()).toMatchObject({ status: 409, title: 'Conflict' });
    expect(res.json().detail).toContain('spindev-00002/prancer');
    expect(await tagsOf('spindev-00002/prancer')).toContainEqual({ Key: 'v', Value: '1' });
  });

  it.each([
    ['an uppercase name (ECR rejects it)', 'spindev-00001', { RepositoryName: 'myAwesomeRepository' }, 'body.RepositoryName'],
    ['a name with a slash', 'spindev-00001', { RepositoryName: 'a/b' }, 'body.RepositoryName'],
    ['a name with a double separator', 'spindev-00001', { RepositoryName: 'a--b' }, 'body.RepositoryName'],
    ['no name', 'spindev-00001', { ScanOnPush: 'true' }, 'body.RepositoryName'],
    ['an uppercase group', 'SpinDev', { RepositoryName: 'ok' }, 'params.group'],
    ['a group ending in a separator', 'spindev-', { RepositoryName: 'ok' }, 'params.group'],
    ['ScanOnPush "yes"', 'spindev-00001', { RepositoryName: 'ok', ScanOnPush: 'yes' }, 'body.ScanOnPush'],
    ['an unknown field', 'spindev-00001', { RepositoryName: 'ok', scanOnPush: 'true' }, 'body.scanOnPush'],
    ['an unknown mutability', 'spindev-00001', { RepositoryName: 'ok', ImageTagMutability: 'SOMETIMES' }, 'body.ImageTagMutability'],
    ['a tag without a key', 'spindev-00001', { RepositoryName: 'ok', Tags: [{ Key: '', Value: 'x' }] }, 'body.Tags.0.Key'],
    ['tags as an object', 'spindev-00001', { RepositoryName: 'ok', Tags: { a: 'b' } }, 'body.Tags'],
    ['a tag key AWS reserves', 'spindev-00001', { RepositoryName: 'ok', Tags: [{ Key: 'aws:x', Value: 'v' }] }, 'body.Tags.0.Key'],
    [
      'the reserved prefix in another case',
      'spindev-00001',
      { RepositoryName: 'ok', Tags: [{ Key: 'Aws:x', Value: 'v' }] },
      'body.Tags.0.Key',
    ],
    ['a control character in a key', 'spindev-00001', { RepositoryName: 'ok', Tags: [{ Key: 'a\u0000b', Value: 'v' }] }, 'body.Tags.0.Key'],
    [
      'half a surrogate pair in a value',
      'spindev-00001',
      { RepositoryName: 'ok', Tags: [{ Key: 'k', Value: 'x\ud800' }] },
      'body.Tags.0.Value',
    ],
    [
      '51 tags',
      'spindev-00001',
      { RepositoryName: 'ok', Tags: Array.from({ length: 51 }, (_, i) => ({ Key: `k${i}`, Value: 'v' })) },
      'body.Tags',
    ],
    ['AES256 with a KMS key', 'spindev-00001', { RepositoryName: 'ok', EncryptionType: 'AES256', KmsKeyId: 'alias/x' }, 'body.KmsKeyId'],
    ['a name longer than 256 in all', 'g'.repeat(200), { RepositoryName: 'n'.repeat(60) }, 'body.RepositoryName'],
  ])('answers 400 for %s, creating nothing', async (_what, group, body, field) => {
    const res = await create(group, body);
    expect(res.statusCode).toBe(400);
    expect(res.json().errors?.map((e: { field: string }) => e.field)).toContain(field);
    const names = (await ecr.send(new DescribeRepositoriesCommand({}))).repositories!.map((r) => r.repositoryName);
    expect(names.filter((n) => n!.endsWith('/ok') || n!.includes('myawesome'))).toEqual([]);
  });

  it('takes tags in any script, an emoji (a surrogate pair) and punctuation included', async () => {
    const tag = { Key: 'équipe ✓', Value: '🚀 <owner> & co' };
    const res = await create('spindev-00001', { RepositoryName: 'blitzen', Tags: [tag] });
    expect(res.statusCode).toBe(200);
    expect(await tagsOf('spindev-00001/blitzen')).toContainEqual(tag);
  });

  it('answers 400 for a body that is not JSON', async () => {
    const res = await app.inject({
      method: 'POST',
      url: `${base()}/g`,
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"RepositoryName":',
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().detail).toBe('The request body is not valid JSON.');
  });

  it.each(['12345678901', '1234567890123', 'abcdefghijkl', '12345678901x'])('answers 400 for the account id %s', async (bad) => {
    const res = await app.inject({ url: `/v1/ecr/${bad}/repositories`, headers: auth });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([{ field: 'params.account', message: 'must be a 12-digit AWS account id' }]);
  });
});

describe('listing', () => {
  let listAccount: string;
  beforeAll(async () => {
    listAccount = newAccount();
    for (const [group, name] of [
      ['grp-b', 'vixen'],
      ['grp-a', 'dasher'],
      ['grp-a', 'comet'],
      ['grp-c', 'rudolph'],
    ]) {
      const res = await app.inject({
        method: 'POST',
        url: `/v1/ecr/${listAccount}/repositories/${group}`,
        headers: auth,
        payload: { RepositoryName: name },
      });
      expect(res.statusCode).toBe(200);
    }
  });

  it('GET /v1/ecr/{account}/repositories lists every repository of the org, sorted', async () => {
    const res = await app.inject({ url: `/v1/ecr/${listAccount}/repositories`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(['grp-a/comet', 'grp-a/dasher', 'grp-b/vixen', 'grp-c/rudolph']);
  });

  it('GET /v1/ecr/{account}/repositories/{group} lists the group only', async () => {
    const res = await app.inject({ url: `/v1/ecr/${listAccount}/repositories/grp-a`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(['grp-a/comet', 'grp-a/dasher']);
    const empty = await app.inject({ url: `/v1/ecr/${listAccount}/repositories/grp-z`, headers: auth });
    expect(empty.statusCode).toBe(200);
    expect(empty.json()).toEqual([]);
  });

  it('an account without repositories lists nothing', async () => {
    const res = await app.inject({ url: `/v1/ecr/${newAccount()}/repositories`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual([]);
  });
});

describe('GET, PUT and DELETE /v1/ecr/{account}/repositories/{group}/{name}', () => {
  const url = () => `${base()}/spindev-00003/cupid`;
  let created: Record<string, unknown>;
  beforeAll(async () => {
    const res = await create('spindev-00003', {
      RepositoryName: 'cupid',
      ScanOnPush: 'true',
      Tags: [{ Key: 'CreatedBy', Value: 'santa' }],
    });
    expect(res.statusCode).toBe(200);
    created = res.json();
  });

  it('GET shows the repository as created', async () => {
    const res = await app.inject({ url: url(), headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(created);
  });

  it('GET answers 404 for a repository that does not exist', async () => {
    const res = await app.inject({ url: `${base()}/spindev-00003/nobody`, headers: auth });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({
      type: 'about:blank',
      title: 'Not Found',
      status: 404,
      detail: 'Repository spindev-00003/nobody not found.',
    });
  });

  it('PUT changes ScanOnPush and merges tags; the org tags cannot be overwritten', async () => {
    const res = await app.inject({
      method: 'PUT',
      url: url(),
      headers: auth,
      payload: {
        ScanOnPush: 'false',
        Tags: [
          { Key: 'Application', Value: 'MyAwesomeCloudApp' },
          { Key: 'CreatedBy', Value: 'elf' },
          { Key: 'spinup:org', Value: 'evilorg' },
          { Key: 'spinup:spaceid', Value: 'elsewhere' },
          { Key: 'Name', Value: 'renamed' },
        ],
      },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.ScanOnPush).toBe('false');
    expect(body.Tags).toEqual([
      { Key: 'CreatedBy', Value: 'elf' },
      { Key: 'Name', Value: 'spindev-00003/cupid' },
      { Key: 'spinup:org', Value: ORG },
      { Key: 'spinup:spaceid', Value: 'spindev-00003' },
      { Key: 'Application', Value: 'MyAwesomeCloudApp' },
    ]);
    expect(await tagsOf('spindev-00003/cupid')).toEqual(expect.arrayContaining(body.Tags));
    expect(await tagsOf('spindev-00003/cupid')).toHaveLength(5);
    expect((await described('spindev-00003/cupid')).imageScanningConfiguration?.scanOnPush).toBe(false);

    // GET agrees with what PUT answered.
    const after = await app.inject({ url: url(), headers: auth });
    expect(after.json().ScanOnPush).toBe('false');
    expect(after.json().Tags).toEqual(expect.arrayContaining(body.Tags));
  });

  it('PUT with an empty body changes nothing', async () => {
    const before = (await app.inject({ url: url(), headers: auth })).json();
    const res = await app.inject({ method: 'PUT', url: url(), headers: auth, payload: {} });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(before);
  });

  it('PUT answers 404 for a repository that does not exist and 400 for a bad body', async () => {
    expect(
      (await app.inject({ method: 'PUT', url: `${base()}/spindev-00003/nobody`, headers: auth, payload: { ScanOnPush: 'true' } }))
        .statusCode,
    ).toBe(404);
    const bad = await app.inject({ method: 'PUT', url: url(), headers: auth, payload: { ScanOnPush: 'maybe' } });
    expect(bad.statusCode).toBe(400);
    const unknown = await app.inject({ method: 'PUT', url: url(), headers: auth, payload: { RepositoryName: 'rename' } });
    expect(unknown.statusCode).toBe(400);
    const reserved = await app.inject({
      method: 'PUT',
      url: url(),
      headers: auth,
      payload: { Tags: [{ Key: 'aws:cloudformation:stack-name', Value: 'x' }] },
    });
    expect(reserved.statusCode).toBe(400);
    expect(reserved.json().errors.map((e: { field: string }) => e.field)).toEqual(['body.Tags.0.Key']);
    expect((await tagsOf('spindev-00003/cupid'))!.map((t) => t.Key)).not.toContain('aws:cloudformation:stack-name');
  });

  it('GET .../images lists every image of the repository', async () => {
    for (const [i, tag] of [
      [1, 'v1'],
      [2, 'v2'],
      [3, 'latest'],
    ] as const) {
      await ecr.send(new PutImageCommand({ repositoryName: 'spindev-00003/cupid', imageManifest: manifest(i), imageTag: tag }));
    }
    const res = await app.inject({ url: `${url()}/images`, headers: auth });
    expect(res.statusCode).toBe(200);
    const images = res.json<Record<string, unknown>[]>();
    expect(images).toHaveLength(3);
    expect(
      images
        .map((i) => i.ImageTags)
        .flat()
        .sort(),
    ).toEqual(['latest', 'v1', 'v2']);
    for (const image of images) {
      expect(image).toMatchObject({
        ImageDigest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
        ImageManifestMediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        ImagePushedAt: expect.stringMatching(/Z$/),
        ImageSizeInBytes: expect.any(Number),
        RegistryId: account,
        RepositoryName: 'spindev-00003/cupid',
      });
      // The original's field order (Go's alphabetical struct order).
      const keys = Object.keys(image);
      expect([...keys].sort()).toEqual(keys);
    }
    const digests = (await ecr.send(new DescribeImagesCommand({ repositoryName: 'spindev-00003/cupid' }))).imageDetails!.map(
      (d) => d.imageDigest,
    );
    expect(images.map((i) => i.ImageDigest).sort()).toEqual(digests.sort());
  });

  it('GET .../images of an empty repository is [] and of a missing one 404', async () => {
    expect((await create('spindev-00003', { RepositoryName: 'empty' })).statusCode).toBe(200);
    const empty = await app.inject({ url: `${base()}/spindev-00003/empty/images`, headers: auth });
    expect(empty.statusCode).toBe(200);
    expect(empty.json()).toEqual([]);
    expect((await app.inject({ url: `${base()}/spindev-00003/nobody/images`, headers: auth })).statusCode).toBe(404);
  });

  it('DELETE force-deletes the repository with its images and answers what was deleted', async () => {
    const res = await app.inject({ method: 'DELETE', url: url(), headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ RepositoryName: 'spindev-00003/cupid', RegistryId: account });
    expect(res.json().Tags).toContainEqual({ Key: 'spinup:org', Value: ORG });
    await expect(ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['spindev-00003/cupid'] }))).rejects.toThrow(/does not exist/);
    expect((await app.inject({ url: url(), headers: auth })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: url(), headers: auth })).statusCode).toBe(404);
  });
});
