import { CreateRepositoryCommand, PutImageCommand } from '@aws-sdk/client-ecr';
import type { App } from '@platform/http-common';
import { get } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, directEcr, manifest, motoEndpoint, newAccount, testApp } from '../support/app.js';
import type { AwsCall } from '../support/aws-call.js';
import { AwsProxy } from '../support/aws-proxy.js';

/**
 * scanFindings of an org with many repositories whose latest images have many findings: moto's
 * scans report a few, so a proxy in front of moto answers DescribeImageScanFindings with a page
 * of 1,000 findings (about 650 KB of JSON); everything else is moto's.
 */
class ManyFindingsProxy extends AwsProxy {
  findingsCalls = 0;
  /** Repositories whose findings AWS refuses (AccessDeniedException). */
  readonly refuse = new Set<string>();

  protected intercept({ operation, params }: AwsCall, res: ServerResponse, _req: IncomingMessage): boolean {
    if (operation !== 'DescribeImageScanFindings') return false;
    this.findingsCalls++;
    if (this.refuse.has(String(params.repositoryName))) {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': 'AccessDeniedException' });
      res.end(JSON.stringify({ __type: 'AccessDeniedException', message: 'not allowed' }));
      return true;
    }
    const findings = Array.from({ length: 1000 }, (_, i) => ({
      name: `CVE-2024-${100_000 + i}`,
      description: 'A flaw was found in the package that allows a remote attacker to do something bad. '.repeat(3),
      uri: `https://security-tracker.debian.org/tracker/CVE-2024-${100_000 + i}`,
      severity: 'MEDIUM',
      attributes: [
        { key: 'package_version', value: '1.2.3-4+deb11u1' },
        { key: 'package_name', value: 'libexample' },
      ],
    }));
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(
      JSON.stringify({
        repositoryName: params.repositoryName,
        imageId: params.imageId,
        imageScanStatus: { status: 'COMPLETE', description: 'The scan was completed successfully.' },
        imageScanFindings: { imageScanCompletedAt: 1_700_000_000, findingSeverityCounts: { MEDIUM: 1000 }, findings },
      }),
    );
    return true;
  }
}

const REPOSITORIES = 80;
let proxy: ManyFindingsProxy;
let app: App;
let account: string;

beforeAll(async () => {
  proxy = await new ManyFindingsProxy(motoEndpoint()).start();
  app = await testApp({ aws: { endpoint: proxy.endpoint } });
  await app.listen({ port: 0, host: '127.0.0.1' });
  account = newAccount();
  const ecr = await directEcr(account);
  for (let i = 0; i < REPOSITORIES; i++) {
    const repositoryName = `grp/r${String(i).padStart(3, '0')}`;
    const tags = [
      { Key: 'Name', Value: repositoryName },
      { Key: 'spinup:org', Value: 'spindev' },
      { Key: 'spinup:spaceid', Value: 'grp' },
    ];
    await ecr.send(new CreateRepositoryCommand({ repositoryName, tags }));
    await ecr.send(new PutImageCommand({ repositoryName, imageManifest: manifest(1000 + i), imageTag: 'v1' }));
  }
}, 60_000);
afterAll(async () => {
  await app?.close();
  await proxy?.stop();
});

describe('scanFindings of many repositories with many findings', () => {
  it('holds a bounded window of repositories while the client reads, not all of them (was: every finding of the org in memory at once, 200 x 1,000 exhausted a 200 MB heap)', async () => {
    const { port } = app.server.address() as AddressInfo;
    const res = await new Promise<IncomingMessage>((resolve, reject) =>
      get({ host: '127.0.0.1', port, path: `/v1/ecr/${account}/scanFindings`, headers: auth }, resolve).on('error', reject),
    );
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    const chunks: Buffer[] = [];
    // The client reads the first chunk, then nothing for a while: the service must stop fetching.
    const first = await new Promise<Buffer>((resolve) => res.once('data', resolve));
    chunks.push(first);
    res.pause();
    await new Promise((r) => setTimeout(r, 1500));
    const fetchedWhilePaused = proxy.findingsCalls;
    expect(fetchedWhilePaused).toBeLessThan(REPOSITORIES / 2);

    res.on('data', (c: Buffer) => chunks.push(c));
    res.resume();
    await new Promise((resolve) => res.once('end', resolve));
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      RepositoryName: string;
      ImageScanFindings: { Findings: unknown[] };
    }[];
    expect(body).toHaveLength(REPOSITORIES);
    expect(body.map((r) => r.RepositoryName)).toEqual(Array.from({ length: REPOSITORIES }, (_, i) => `grp/r${String(i).padStart(3, '0')}`));
    expect(body.every((r) => r.ImageScanFindings.Findings.length === 1000)).toBe(true);
    expect(proxy.findingsCalls).toBe(REPOSITORIES);
  }, 60_000);

  it('fails as before when a repository fails: a problem while the answer is small, a cut connection (never a complete-looking list) once it streams', async () => {
    const { port } = app.server.address() as AddressInfo;
    const read = () =>
      new Promise<{ status: number; body: string; complete: boolean }>((resolve, reject) => {
        get({ host: '127.0.0.1', port, path: `/v1/ecr/${account}/scanFindings`, headers: auth }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          const done = (complete: boolean) =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), complete });
          res.on('end', () => done(res.complete));
          res.on('error', () => done(false));
          res.on('aborted', () => done(false));
        }).on('error', reject);
      });
    try {
      proxy.refuse.add('grp/r001'); // within the first few MB: an ordinary error answer
      const early = await read();
      expect(early.status).toBe(403);
      expect(JSON.parse(early.body).title).toBe('Forbidden');

      proxy.refuse.clear();
      proxy.refuse.add('grp/r070'); // long after the first bytes were sent
      const late = await read();
      expect(late.status).toBe(200);
      expect(late.complete).toBe(false);
      expect(() => JSON.parse(late.body)).toThrow();
    } finally {
      proxy.refuse.clear();
    }
  }, 60_000);

  it('cuts a streamed answer when the service closes while repositories are still to be read, even if its client reads nothing', async () => {
    const closing = await testApp({ aws: { endpoint: proxy.endpoint } });
    await closing.listen({ port: 0, host: '127.0.0.1' });
    const { port } = closing.server.address() as AddressInfo;
    const res = await new Promise<IncomingMessage>((resolve, reject) =>
      get({ host: '127.0.0.1', port, path: `/v1/ecr/${account}/scanFindings`, headers: auth }, resolve).on('error', reject),
    );
    expect(res.statusCode).toBe(200);
    await new Promise((resolve) => res.once('data', resolve));
    res.pause(); // a client that stops reading, and never reads again
    const started = Date.now();
    // The close's cut-off (3 s) ends the request's AWS work, and with it the answer's connection:
    // the close is done although the client never read on (before: it waited for the client for ever).
    await closing.close();
    expect(Date.now() - started).toBeLessThan(6000);
    expect(res.complete).toBe(false);
    res.destroy();
  }, 30_000);
});
