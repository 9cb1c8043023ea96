import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metric, newAccount, testApp } from '../support/app.js';

let app: App;
beforeAll(async () => {
  app = await testApp();
});
afterAll(() => app?.close());

describe('CORS preflight', () => {
  it.each(['/v1/ecr/123456789012/repositories/grp/app/users/ci', '/v1/ecr/123456789012/scanFindings', '/v1/ecr/ping', '/anything/at/all'])(
    'OPTIONS %s answers 200, empty, with the original headers, without a token and without AWS',
    async (url) => {
      const res = await app.inject({
        method: 'OPTIONS',
        url,
        headers: { origin: 'https://ui.example', 'access-control-request-method': 'DELETE' },
      });
      expect(res.statusCode).toBe(200);
      expect(res.body).toBe('');
      expect(res.headers['access-control-allow-origin']).toBe('*');
      expect(res.headers['access-control-allow-headers']).toBe('X-Auth-Token');
      expect(await metric(app, 'aws_api_calls_total')).toBe(0);
    },
  );

  it('ping and version allow any origin, as the original', async () => {
    expect((await app.inject('/v1/ecr/ping')).headers['access-control-allow-origin']).toBe('*');
    expect((await app.inject('/v1/ecr/version')).headers['access-control-allow-origin']).toBe('*');
  });

  it('a GET without a token is still a 403 (the preflight opens nothing else)', async () => {
    expect((await app.inject(`/v1/ecr/${newAccount()}/scanFindings`)).statusCode).toBe(403);
  });
});

describe('OpenAPI', () => {
  it('documents every route, with the X-Auth-Token requirement and a 200 response schema', async () => {
    const doc = (await app.inject('/v1/ecr/docs/json')).json<{
      paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, unknown> }>>;
    }>();
    const expected: [string, string][] = [
      ['get', '/v1/ecr/{account}/repositories/{group}/{name}/images/{tag}'],
      ['delete', '/v1/ecr/{account}/repositories/{group}/{name}/images/{tag}'],
      ['get', '/v1/ecr/{account}/repositories/{group}/{name}/users'],
      ['post', '/v1/ecr/{account}/repositories/{group}/{name}/users'],
      ['get', '/v1/ecr/{account}/repositories/{group}/{name}/users/{user}'],
      ['put', '/v1/ecr/{account}/repositories/{group}/{name}/users/{user}'],
      ['delete', '/v1/ecr/{account}/repositories/{group}/{name}/users/{user}'],
      ['get', '/v1/ecr/{account}/scanRepositories'],
      ['get', '/v1/ecr/{account}/scanFindings'],
    ];
    for (const [method, path] of expected) {
      const op = doc.paths[path]?.[method];
      expect(op, `${method} ${path}`).toBeDefined();
      expect(op!.security).toEqual([{ xAuthToken: [] }]);
      expect(Object.keys(op!.responses)).toEqual(expect.arrayContaining(['200', '400', '403', '404', '429', '502']));
    }
    const show = JSON.stringify(doc.paths['/v1/ecr/{account}/repositories/{group}/{name}']?.get?.responses['200']);
    expect(show).toContain('Groups');
  });
});
