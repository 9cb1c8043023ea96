import type { ServerResponse } from 'node:http';
import type { App } from '@platform/http-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AwsCall } from '../support/aws-call.js';
import { AwsProxy } from '../support/aws-proxy.js';
import { auth, motoEndpoint, newAccount, testApp, createGrpApp } from '../support/app.js';

/**
 * An answer whose headers arrive and whose body then stops: the SDK's requestTimeout ends with the
 * headers, so without a socket timeout the attempt waited for the request's deadline.
 */
class StallingProxy extends AwsProxy {
  readonly seen: string[] = [];
  /** Calls of this operation still to stall after their headers and the first bytes of a body. */
  stall = { operation: '', left: 0 };

  protected intercept(call: AwsCall, res: ServerResponse): boolean {
    this.seen.push(call.operation);
    if (call.operation !== this.stall.operation || this.stall.left === 0) return false;
    this.stall.left--;
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1', 'content-length': '4096' });
    res.write('{"repositories": [{"repositoryArn": "arn:aws:ecr:');
    return true;
  }
}

let proxy: StallingProxy;
let app: App;
let account: string;

beforeAll(async () => {
  proxy = await new StallingProxy(motoEndpoint()).start();
  app = await testApp({ deadlineMs: 5_000, aws: { endpoint: proxy.endpoint, attemptTimeouts: { requestTimeout: 500 } } });
  account = newAccount();
  await createGrpApp(app, account);
});
afterAll(async () => {
  await app?.close();
  await proxy?.stop();
});

describe('an answer whose body stops arriving', () => {
  it('fails its attempt at the answer timeout, and the retry answers (was: 504 at the request deadline)', async () => {
    proxy.seen.length = 0;
    proxy.stall = { operation: 'DescribeRepositories', left: 1 };
    const res = await app.inject({ url: `/v1/ecr/${account}/repositories/grp/app`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json().RepositoryName).toBe('grp/app');
    expect(proxy.seen.filter((o) => o === 'DescribeRepositories')).toHaveLength(2);
  });
});
