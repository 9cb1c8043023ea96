import type { App } from '@platform/http-common';
import { HttpProblem } from '@platform/http-common';
import { afterEach, describe, expect, it } from 'vitest';
import { AssumeRoleError } from '../../src/aws/credentials.js';
import { ServiceClosing } from '../../src/aws/deadline.js';
import { classifyAwsError, scrub } from '../../src/aws/errors.js';
import { auth, BASE_AKID, BASE_SECRET, EXTERNAL_ID, metric, newAccount, SHARED_KEY, testApp, TOKEN } from '../support/app.js';
import { assumeRoleXml, StubAws, stsError, STUB_ACCESS_KEY, STUB_SECRET, STUB_SESSION_TOKEN, type StubRoute } from '../support/stub-aws.js';

/** Throttling, AWS faults and AssumeRole refusals, which moto cannot produce, with canned answers. */
let app: App | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

const account = newAccount();
const ORG = 'spindev';
const SECRETS = [STUB_SECRET, STUB_SESSION_TOKEN, STUB_ACCESS_KEY, BASE_SECRET, BASE_AKID, SHARED_KEY, EXTERNAL_ID, TOKEN];
const repo = { repositoryName: 'grp/app', repositoryArn: `arn:aws:ecr:us-east-1:${account}:repository/grp/app`, registryId: account };
const owned = [
  { Key: 'Name', Value: 'grp/app' },
  { Key: 'spinup:org', Value: ORG },
  { Key: 'spinup:spaceid', Value: 'grp' },
];

async function stubbed(routes: Record<string, StubRoute>, maxAttempts = 1) {
  const stub = new StubAws({
    AssumeRole: () => assumeRoleXml(),
    GetRepositoryPolicy: () => ({ awsError: 'RepositoryPolicyNotFoundException', message: 'no policy' }),
    ...routes,
  });
  app = await testApp({
    org: ORG,
    listStrategy: 'tagging',
    aws: { endpoint: 'http://127.0.0.1:9', requestHandler: stub, maxAttempts },
  });
  return { stub, app };
}

function expectNoSecrets(body: string) {
  for (const secret of SECRETS) expect(body).not.toContain(secret);
}

describe('AWS errors through HTTP', () => {
  it('answers 429 with Retry-After when ECR keeps throttling, after the SDK retried', async () => {
    const { stub, app } = await stubbed({ DescribeRepositories: () => ({ awsError: 'ThrottlingException', message: 'Rate exceeded' }) }, 2);
    const res = await app.inject({ url: `/v1/ecr/${account}/repositories/grp/app`, headers: auth });
    expect(res.statusCode).toBe(429);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json()).toMatchObject({ status: 429, title: 'Too Many Requests', detail: 'AWS is throttling requests; retry later.' });
    expect(stub.count('DescribeRepositories')).toBe(2);
    expect(
      await metric(app, 'aws_api_calls_total', { service: 'ecr', operation: 'DescribeRepositories', outcome: 'ThrottlingException' }),
    ).toBe(1);
  });

  it('recovers when a throttled call succeeds on the SDK retry', async () => {
    const { stub, app } = await stubbed(
      {
        DescribeRepositories: (_p, _c, nth) =>
          nth === 1 ? { awsError: 'ThrottlingException', message: 'Rate exceeded' } : { json: { repositories: [repo] } },
        ListTagsForResource: () => ({ json: { tags: owned } }),
      },
      3,
    );
    const res = await app.inject({ url: `/v1/ecr/${account}/repositories/grp/app`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(stub.count('DescribeRepositories')).toBe(2);
  });

  it.each([
    ['ThrottledException from the tagging API', 429, 'GetResources', 'ThrottledException'],
    ['LimitExceededException', 429, 'GetResources', 'LimitExceededException'],
    ['InvalidParameterException', 400, 'GetResources', 'InvalidParameterException'],
    ['InternalServiceException', 502, 'GetResources', 'InternalServiceException'],
    ['AccessDeniedException (role lacks a permission)', 403, 'GetResources', 'AccessDeniedException'],
    ['UnrecognizedClientException (the assumed credentials refused: retry, renewed)', 503, 'GetResources', 'UnrecognizedClientException'],
  ])('maps %s to %i', async (_what, status, operation, awsError) => {
    const { app } = await stubbed({
      [operation]: () => ({ awsError, message: `${awsError} happened`, status: awsError.startsWith('Internal') ? 500 : 400 }),
    });
    const res = await app.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
    expect(res.statusCode).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json().status).toBe(status);
  });

  it('maps TooManyTagsException on update to 400 (not a retryable 429) and InvalidTagParameterException to 400', async () => {
    const routes = (tagError: string): Record<string, StubRoute> => ({
      DescribeRepositories: () => ({ json: { repositories: [repo] } }),
      ListTagsForResource: () => ({ json: { tags: owned } }),
      TagResource: () => ({ awsError: tagError, message: 'tags' }),
    });
    let { app: a } = await stubbed(routes('TooManyTagsException'));
    const put = (a2: App) =>
      a2.inject({
        method: 'PUT',
        url: `/v1/ecr/${account}/repositories/grp/app`,
        headers: auth,
        payload: { Tags: [{ Key: 'x', Value: 'y' }] },
      });
    expect((await put(a)).statusCode).toBe(400);
    expect((await put(a)).headers['retry-after']).toBeUndefined();
    await a.close();
    ({ app: a } = await stubbed(routes('InvalidTagParameterException')));
    expect((await put(a)).statusCode).toBe(400);
  });

  it('answers 403 when AssumeRole is denied, and tries again on the next request', async () => {
    const stub = new StubAws({
      AssumeRole: (_p, _c, nth) =>
        nth === 1
          ? stsError(
              'AccessDenied',
              `User: arn:aws:iam::123456789012:user/svc is not authorized to perform: sts:AssumeRole with ${BASE_AKID}`,
            )
          : assumeRoleXml(),
      GetResources: () => ({ json: { ResourceTagMappingList: [] } }),
    });
    app = await testApp({
      org: ORG,
      listStrategy: 'tagging',
      aws: { endpoint: 'http://127.0.0.1:9', requestHandler: stub, maxAttempts: 1 },
    });
    const denied = await app.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
    expect(denied.statusCode).toBe(403);
    expect(denied.json()).toEqual({
      type: 'about:blank',
      title: 'Forbidden',
      status: 403,
      detail: `Cannot assume the role arn:aws:iam::${account}:role/SpinupECRRole in account ${account} (AccessDenied).`,
    });
    expectNoSecrets(denied.body);
    expect(await metric(app, 'sts_assume_role_total', { outcome: 'AccessDenied' })).toBe(1);

    // A refusal is not cached: once the role trusts us, the next request works.
    const ok = await app.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
    expect(ok.statusCode).toBe(200);
    expect(stub.count('AssumeRole')).toBe(2);
  });

  it('answers 429 when STS throttles AssumeRole and 502 when STS rejects our own credentials', async () => {
    let { app: a } = await stubbed({ AssumeRole: () => stsError('Throttling', 'Rate exceeded', 400) });
    const throttled = await a.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
    expect(throttled.statusCode).toBe(429);
    await a.close();
    ({ app: a } = await stubbed({
      AssumeRole: () => stsError('InvalidClientTokenId', `The security token included in the request is invalid: ${BASE_AKID}`),
    }));
    const rejected = await a.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
    expect(rejected.statusCode).toBe(502);
    expect(rejected.json().detail).toContain('InvalidClientTokenId');
    expectNoSecrets(rejected.body);
  });

  it('answers 502 naming the cause when STS cannot be reached', async () => {
    const { app } = await stubbed({ AssumeRole: () => ({ networkError: 'ECONNREFUSED' }) });
    const res = await app.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth });
    expect(res.statusCode).toBe(502);
    expect(res.json().detail).toBe(`AssumeRole into account ${account} failed: AWS STS could not be reached (ECONNREFUSED).`);
    expectNoSecrets(res.body);
  });

  it('never puts credentials in an error body, even when AWS quotes them', async () => {
    const chatty = `Request with key ${STUB_ACCESS_KEY} token ${STUB_SESSION_TOKEN} secret ${STUB_SECRET} failed`;
    for (const awsError of [
      'InvalidParameterException',
      'RepositoryNotFoundException',
      'RepositoryAlreadyExistsException',
      'ServerException',
      'SomethingNewException',
    ]) {
      const { app: a } = await stubbed({
        CreateRepository: () => ({ awsError, message: chatty, status: awsError === 'ServerException' ? 500 : 400 }),
      });
      const res = await a.inject({
        method: 'POST',
        url: `/v1/ecr/${account}/repositories/grp`,
        headers: auth,
        payload: { RepositoryName: 'app' },
      });
      expect(res.statusCode, awsError).toBeGreaterThanOrEqual(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expectNoSecrets(res.body);
      await a.close();
      app = undefined;
    }
  });
});

describe('classifyAwsError', () => {
  const sdk = (name: string, extra: Record<string, unknown> = {}) =>
    Object.assign(new Error(`${name} message`), { name, $metadata: { httpStatusCode: 400 }, $fault: 'client', ...extra });

  it.each([
    ['RepositoryNotFoundException', 404],
    ['ImageNotFoundException', 404],
    ['RepositoryAlreadyExistsException', 409],
    ['RepositoryNotEmptyException', 409],
    ['InvalidParameterException', 400],
    ['InvalidTagParameterException', 400],
    ['ValidationException', 400],
    ['LimitExceededException', 429],
    ['TooManyTagsException', 400],
    ['NoSuchEntityException', 404],
    ['EntityAlreadyExistsException', 409],
    ['DeleteConflictException', 409],
    ['MalformedPolicyDocumentException', 400],
    ['InvalidInputException', 400],
    ['ValidationError', 400],
    ['ThrottlingException', 429],
    ['ThrottledException', 429],
    ['AccessDeniedException', 403],
    ['ServerException', 502],
    ['KmsException', 400],
    ['UnknownShinyException', 502],
  ])('%s → %i', (name, status) => {
    expect(classifyAwsError(sdk(name))?.statusCode).toBe(status);
  });

  it('maps throttling the SDK recognises by its retry hint, whatever the name', () => {
    expect(classifyAwsError(sdk('SomeNewThrottle', { $retryable: { throttling: true } }))?.statusCode).toBe(429);
  });

  it('maps AssumeRole failures by their cause', () => {
    const arn = 'arn:aws:iam::111111111111:role/R';
    expect(classifyAwsError(new AssumeRoleError('111111111111', arn, sdk('AccessDenied')))?.statusCode).toBe(403);
    expect(classifyAwsError(new AssumeRoleError('111111111111', arn, sdk('RegionDisabledException')))?.statusCode).toBe(403);
    expect(classifyAwsError(new AssumeRoleError('111111111111', arn, sdk('Throttling')))?.statusCode).toBe(429);
    expect(classifyAwsError(new AssumeRoleError('111111111111', arn, sdk('ExpiredToken')))?.statusCode).toBe(502);
    expect(classifyAwsError(new AssumeRoleError('111111111111', arn, new Error('boom')))?.statusCode).toBe(502);
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN']) {
      const cause = Object.assign(new Error(`connect ${code} sts.amazonaws.com`), { code, $metadata: { attempts: 3 } });
      expect(classifyAwsError(new AssumeRoleError('111111111111', arn, cause))).toMatchObject({
        statusCode: 502,
        message: `AssumeRole into account 111111111111 failed: AWS STS could not be reached (${code}).`,
      });
    }
    const connect = Object.assign(new Error('did not establish a connection'), { name: 'TimeoutError' });
    expect(classifyAwsError(new AssumeRoleError('111111111111', arn, connect))).toMatchObject({
      statusCode: 504,
      message: 'AWS STS did not answer AssumeRole into account 111111111111 in time (TimeoutError); retry later.',
    });
  });

  it("maps an attempt that timed out to 504 and a refused connection to 502, with or without the SDK's $metadata", () => {
    const attempts = { $metadata: { attempts: 1, totalRetryDelay: 0 } };
    const connect = Object.assign(new Error('did not establish a connection'), { name: 'TimeoutError' });
    const answer = Object.assign(new Error('exceeded the configured requestTimeout'), { name: 'TimeoutError', code: 'ETIMEDOUT' });
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const reset = Object.assign(new Error('socket hang up'), { name: 'TimeoutError', code: 'ECONNRESET' });
    for (const extra of [{}, attempts]) {
      expect(classifyAwsError(Object.assign(connect, extra))?.statusCode).toBe(504);
      expect(classifyAwsError(Object.assign(answer, extra))?.statusCode).toBe(504);
      expect(classifyAwsError(Object.assign(refused, extra))).toMatchObject({
        statusCode: 502,
        message: 'AWS could not be reached (ECONNREFUSED).',
      });
      expect(classifyAwsError(Object.assign(reset, extra))?.statusCode).toBe(502);
    }
  });

  it('maps AWS calls cancelled by the shutdown to 503 with Retry-After', () => {
    expect(classifyAwsError(new ServiceClosing())).toMatchObject({ statusCode: 503, headers: { 'retry-after': '1' } });
  });

  it('leaves our own errors alone and unknown ones to the generic 500', () => {
    const problem = new HttpProblem(404, 'x');
    expect(classifyAwsError(problem)).toBe(problem);
    expect(classifyAwsError(new TypeError('bug'))).toBeUndefined();
    expect(classifyAwsError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))?.statusCode).toBe(502);
  });

  it('scrubs keys and tokens but keeps repository names', () => {
    const text = scrub(
      `repo spindev-00001/my-very-long-repository-name-for-tests key AKIAABCDEFGHIJKLMNOP secret ${BASE_SECRET} token ${STUB_SESSION_TOKEN}`,
    );
    expect(text).toContain('spindev-00001/my-very-long-repository-name-for-tests');
    expect(text).not.toContain('AKIAABCDEFGHIJKLMNOP');
    expect(text).not.toContain(BASE_SECRET);
    expect(text).not.toContain(STUB_SESSION_TOKEN);
  });
});
