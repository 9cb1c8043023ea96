import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, newAccount, testApp } from '../support/app.js';

let app: App;
beforeAll(async () => {
  app = await testApp();
});
afterAll(() => app?.close());

describe('public routes', () => {
  it('GET /v1/ecr/ping answers pong without a token', async () => {
    const res = await app.inject('/v1/ecr/ping');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toBe('pong');
  });

  it('GET /v1/ecr/version answers the build information in the original shape', async () => {
    const res = await app.inject('/v1/ecr/version');
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe('{"version":"9.8.7","githash":"abc1234","buildstamp":"2026-01-02T03:04:05Z"}');
  });

  it('GET /v1/ecr/metrics exposes request and AWS-call metrics without a token', async () => {
    const account = newAccount();
    expect((await app.inject({ url: `/v1/ecr/${account}/repositories`, headers: auth })).statusCode).toBe(200);
    const res = await app.inject('/v1/ecr/metrics');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toContain(
      'http_request_duration_seconds_count{method="GET",route="/v1/ecr/:account/repositories",status_code="200"} 1',
    );
    expect(res.body).toContain('aws_api_calls_total{service="sts",operation="AssumeRole",outcome="success"} 1');
    expect(res.body).toContain('aws_api_calls_total{service="ecr",operation="DescribeRepositories",outcome="success"} 1');
    expect(res.body).toContain('sts_assume_role_total{outcome="success"} 1');
    expect(res.body).toContain('aws_api_call_duration_seconds_count{service="ecr",operation="DescribeRepositories"} 1');
  });

  it('serves the OpenAPI document without a token, with the X-Auth-Token scheme', async () => {
    const res = await app.inject('/v1/ecr/docs/json');
    expect(res.statusCode).toBe(200);
    const doc = res.json<{ paths: Record<string, unknown>; components: { securitySchemes: Record<string, unknown> } }>();
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/ecr/ping',
        '/v1/ecr/version',
        '/v1/ecr/{account}/repositories',
        '/v1/ecr/{account}/repositories/{group}',
        '/v1/ecr/{account}/repositories/{group}/{name}',
        '/v1/ecr/{account}/repositories/{group}/{name}/images',
      ]),
    );
    expect(doc.components.securitySchemes.xAuthToken).toMatchObject({ type: 'apiKey', in: 'header', name: 'X-Auth-Token' });
  });
});
