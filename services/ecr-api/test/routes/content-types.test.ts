import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DescribeImagesCommand, DescribeRepositoriesCommand, PutImageCommand, type ECRClient } from '@aws-sdk/client-ecr';
import { GetUserCommand, type IAMClient } from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { directEcr, manifest, newAccount, testApp, TOKEN } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';

/**
 * The original decoded every body as JSON whatever its Content-Type, and its DELETE handlers never
 * read one. Requests go over a real socket (the service's own Node server) with exactly the headers
 * given: no client library adds a Content-Type or Content-Length here.
 */
let app: App;
let port: number;
let account: string;
let ecr: ECRClient;
let iam: IAMClient;

interface Answer {
  status: number;
  type: string | undefined;
  body: Record<string, unknown>;
}

function send(method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const length = body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) };
    const req = http.request(
      { host: '127.0.0.1', port, method, path, headers: { 'x-auth-token': TOKEN, ...length, ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode!, type: res.headers['content-type'], body: text ? JSON.parse(text) : {} });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const repositories = () => `/v1/ecr/${account}/repositories`;
const exists = async (name: string) =>
  ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [name] })).then(
    () => true,
    (err: Error) => (err.name === 'RepositoryNotFoundException' ? false : Promise.reject(err)),
  );

beforeAll(async () => {
  app = await testApp();
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as AddressInfo).port;
  account = newAccount();
  ecr = await directEcr(account);
  iam = await directIam(account);
});
afterAll(() => app?.close());

describe('request bodies are JSON whatever the Content-Type', () => {
  it.each([
    ['no Content-Type', 'none', {}],
    ["curl's default application/x-www-form-urlencoded", 'form', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['text/plain', 'text', { 'content-type': 'text/plain; charset=utf-8' }],
    ['a Content-Type that is no media type', 'bare', { 'content-type': 'json' }],
    ['an empty Content-Type', 'empty', { 'content-type': '' }],
    ['application/json', 'json', { 'content-type': 'application/json' }],
  ])('POST with %s creates the repository', async (_what, name, headers) => {
    const res = await send('POST', `${repositories()}/grp`, headers, JSON.stringify({ RepositoryName: name, ScanOnPush: 'true' }));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ RepositoryName: `grp/${name}`, ScanOnPush: 'true' });
    expect(await exists(`grp/${name}`)).toBe(true);
  });

  it('PUT with text/plain updates', async () => {
    const res = await send('PUT', `${repositories()}/grp/text`, { 'content-type': 'text/plain' }, '{"ScanOnPush":"false"}');
    expect(res.status).toBe(200);
    expect(res.body.ScanOnPush).toBe('false');
  });

  it.each([
    ['application/json', { 'content-type': 'application/json' }],
    ['no Content-Type', {}],
  ])('an empty body with %s is no body: 400 naming body, nothing created', async (_what, headers) => {
    for (const body of [undefined, '', ' \r\n']) {
      const res = await send('POST', `${repositories()}/grp`, headers, body);
      expect(res.status).toBe(400);
      expect(res.type).toMatch(/^application\/problem\+json/);
      expect(res.body.errors).toEqual([{ field: 'body', message: 'must be object' }]);
    }
    expect((await ecr.send(new DescribeRepositoriesCommand({}))).repositories).toHaveLength(6);
  });

  it.each([
    ['application/json', { 'content-type': 'application/json' }],
    ['text/plain', { 'content-type': 'text/plain' }],
    ['no Content-Type', {}],
  ])('invalid JSON with %s is a 400 problem', async (_what, headers) => {
    const res = await send('POST', `${repositories()}/grp`, headers, '{"RepositoryName":');
    expect(res.status).toBe(400);
    expect(res.type).toMatch(/^application\/problem\+json/);
    expect(res.body.detail).toBe('The request body is not valid JSON.');
  });

  it('a compressed body is still a 415, and a body over 64 KiB a 413, whatever the Content-Type', async () => {
    const gzip = await send('POST', `${repositories()}/grp`, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, '{}');
    expect(gzip.status).toBe(415);
    const big = JSON.stringify({ RepositoryName: 'big', Tags: [{ Key: 'k', Value: 'v'.repeat(70_000) }] });
    for (const headers of [{ 'content-type': 'text/plain' }, {}] as Record<string, string>[]) {
      const res = await send('POST', `${repositories()}/grp`, headers, big);
      expect(res.status).toBe(413);
    }
    expect(await exists('grp/big')).toBe(false);
  });
});

describe('DELETE reads no body', () => {
  const json = { 'content-type': 'application/json' };
  beforeAll(async () => {
    await ecr.send(new PutImageCommand({ repositoryName: 'grp/json', imageManifest: manifest(1), imageTag: 'v1' }));
    await ecr.send(new PutImageCommand({ repositoryName: 'grp/json', imageManifest: manifest(2), imageTag: 'v2' }));
    for (const user of ['ci', 'deploy']) {
      expect((await send('POST', `${repositories()}/grp/json/users`, json, JSON.stringify({ UserName: user }))).status).toBe(200);
    }
  });

  it('DELETE of an image tag, a user and a repository with Content-Type: application/json and no body deletes them', async () => {
    expect((await send('DELETE', `${repositories()}/grp/json/images/v1`, json)).status).toBe(200);
    const tags = (await ecr.send(new DescribeImagesCommand({ repositoryName: 'grp/json' }))).imageDetails!.flatMap((d) => d.imageTags);
    expect(tags).toEqual(['v2']);

    expect((await send('DELETE', `${repositories()}/grp/json/users/ci`, json, '')).status).toBe(200);
    await expect(iam.send(new GetUserCommand({ UserName: 'json-ci' }))).rejects.toMatchObject({ name: 'NoSuchEntityException' });

    // Whatever body comes is ignored, as the original never read it.
    const res = await send('DELETE', `${repositories()}/grp/json`, json, '{"not": "read"');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ RepositoryName: 'grp/json', Users: ['deploy'] });
    expect(await exists('grp/json')).toBe(false);
  });
});
