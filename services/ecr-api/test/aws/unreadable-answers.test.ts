import type { ECRClient } from '@aws-sdk/client-ecr';
import { ListAccessKeysCommand } from '@aws-sdk/client-iam';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auth, directEcr, motoEndpoint, newAccount, repositoryExists, testApp, createGrpApp } from '../support/app.js';
import { directIam } from '../support/direct-iam.js';
import { FaultProxy } from '../support/fault-proxy.js';

/**
 * Answers that are not AWS's (a proxy's or load balancer's HTML error page, a body cut short), by
 * a proxy in front of moto; the SDK's own retries (3 attempts) are on.
 */
let proxy: FaultProxy;
let app: App;
let account: string;
let ecr: ECRClient;
const HTML = { contentType: 'text/html', body: '<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>' };

beforeAll(async () => {
  proxy = await new FaultProxy(motoEndpoint()).start();
  app = await testApp({ aws: { endpoint: proxy.endpoint } });
  account = newAccount();
  ecr = await directEcr(account);
  await createGrpApp(app, account);
});
afterAll(async () => {
  await app?.close();
  await proxy?.stop();
});
beforeEach(() => proxy.clear());

describe('an answer that is not an AWS answer', () => {
  it('is named by its HTTP status, not the parser (was: "AWS failed to handle the request (SyntaxError)"); a 5xx one is retried, then says to retry', async () => {
    proxy.fail('DescribeRepositories', { code: 'html', status: 503, raw: HTML });
    const res = await app.inject({ url: `/v1/ecr/${account}/repositories/grp/app`, headers: auth });
    expect(res.statusCode).toBe(502);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json().detail).toBe('AWS answered HTTP 503 with a body that is not an AWS answer; retry later.');
    expect(proxy.count('DescribeRepositories')).toBe(3);

    proxy.clear();
    proxy.fail('GetRepositoryPolicy', {
      code: 'cut',
      status: 200,
      raw: { contentType: 'application/x-amz-json-1.1', body: '{"policyText": "{\\"Ver' },
    });
    const cut = await app.inject({ url: `/v1/ecr/${account}/repositories/grp/app`, headers: auth });
    expect(cut.statusCode).toBe(502);
    expect(cut.headers['retry-after']).toBeUndefined();
    expect(cut.json().detail).toBe('AWS answered HTTP 200 with a body that is not an AWS answer.');
  });

  it('in the middle of a create: the repository is deleted again, and the answer says so', async () => {
    proxy.fail('SetRepositoryPolicy', { code: 'html', status: 502, raw: HTML });
    const res = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${account}/repositories/grp`,
      headers: auth,
      payload: { RepositoryName: 'half' },
    });
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toContain('AWS answered HTTP 502 with a body that is not an AWS answer');
    expect(res.json().detail).toContain('nothing was changed');
    expect(await repositoryExists(ecr, 'grp/half')).toBe(false);
  });

  it('from STS AssumeRole too, named by its HTTP status (was: "AssumeRole into account ... failed (Error).")', async () => {
    const cut =
      '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>ASIALEAKLEAKLEAK1234</AccessKeyId><SecretAccessKey>LeakedSecretKey/abcDEF1234567890xyzXYZ</SecretAccessKey><SessionToken>LeakedSessionTokenFQoGZXIvYXdzEXAMPLE</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult><Respo';
    proxy.fail('AssumeRole', { code: 'cut', status: 200, raw: { contentType: 'text/xml', body: cut } });
    const fresh = newAccount();
    const res = await app.inject({ url: `/v1/ecr/${fresh}/repositories`, headers: auth });
    expect(res.statusCode).toBe(502);
    expect(res.headers['retry-after']).toBeUndefined();
    expect(res.json().detail).toBe(`AssumeRole into account ${fresh} failed: AWS answered HTTP 200 with a body that is not an AWS answer.`);
    expect(res.body).not.toMatch(/Leak|ASIA/);

    proxy.clear();
    proxy.fail('AssumeRole', { code: 'html', status: 503, raw: HTML });
    const html = await app.inject({ url: `/v1/ecr/${fresh}/repositories`, headers: auth });
    expect(html.statusCode).toBe(502);
    expect(html.headers['retry-after']).toBe('1');
    expect(html.json().detail).toBe(
      `AssumeRole into account ${fresh} failed: AWS answered HTTP 503 with a body that is not an AWS answer; retry later.`,
    );
    // The role is assumed again once STS answers.
    proxy.clear();
    expect((await app.inject({ url: `/v1/ecr/${fresh}/repositories`, headers: auth })).statusCode).toBe(200);
  });
});

describe('a 200 whose body is cut off (the call was done, its answer lost)', () => {
  const cut = (contentType: string, body: string) => ({ code: 'cut', status: 200, applied: true, times: 1, raw: { contentType, body } });

  it('to CreateRepository: not sent again, and the repository is deleted again (was: sent 3 times, or left without its policy and a 502 that said nothing of it)', async () => {
    proxy.fail('CreateRepository', cut('application/x-amz-json-1.1', '{"repository": {"repositoryArn": "arn:aws:ecr:us-'));
    const res = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${account}/repositories/grp`,
      headers: auth,
      payload: { RepositoryName: 'cut' },
    });
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toContain('AWS answered HTTP 200 with a body that is not an AWS answer');
    expect(res.json().detail).toContain('nothing was changed');
    expect(proxy.count('CreateRepository')).toBe(1);
    expect(await repositoryExists(ecr, 'grp/cut')).toBe(false);

    proxy.clear();
    const retry = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${account}/repositories/grp`,
      headers: auth,
      payload: { RepositoryName: 'cut' },
    });
    expect(retry.statusCode).toBe(200);
  });

  it('to CreateAccessKey: not sent again, and the key whose secret was lost is deleted (was: the user kept it)', async () => {
    const user = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${account}/repositories/grp/app/users`,
      headers: auth,
      payload: { UserName: 'ci' },
    });
    expect(user.statusCode).toBe(200);
    const iam = await directIam(account);
    proxy.fail('CreateAccessKey', cut('text/xml', '<CreateAccessKeyResponse><CreateAccessKeyResult><AccessKey><UserName>app-ci</Us'));
    const res = await app.inject({
      method: 'PUT',
      url: `/v1/ecr/${account}/repositories/grp/app/users/ci`,
      headers: auth,
      payload: { ResetKey: true },
    });
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toContain('nothing was changed');
    expect(proxy.count('CreateAccessKey')).toBe(1);
    expect((await iam.send(new ListAccessKeysCommand({ UserName: 'app-ci' }))).AccessKeyMetadata).toEqual([]);
  });

  it('to DeleteRepository: the repository is gone, so the DELETE answers 200 (was: a 502 for a repository it had deleted)', async () => {
    const created = await app.inject({
      method: 'POST',
      url: `/v1/ecr/${account}/repositories/grp`,
      headers: auth,
      payload: { RepositoryName: 'gone' },
    });
    expect(created.statusCode).toBe(200);
    proxy.fail('DeleteRepository', cut('application/x-amz-json-1.1', '{"repository": {"repositoryArn": "arn:aws:ecr:us-'));
    const res = await app.inject({ method: 'DELETE', url: `/v1/ecr/${account}/repositories/grp/gone`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json().RepositoryName).toBe('grp/gone');
    expect(await repositoryExists(ecr, 'grp/gone')).toBe(false);
  });
});
