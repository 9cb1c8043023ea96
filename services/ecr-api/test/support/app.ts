import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { CreateRepositoryCommand, DescribeRepositoriesCommand, ECRClient, PutImageCommand } from '@aws-sdk/client-ecr';
import type { App } from '@platform/http-common';
import bcrypt from 'bcryptjs';
import { randomInt } from 'node:crypto';
import { expect, inject } from 'vitest';
import { buildApp, type AwsOverrides } from '../../src/app.js';
import type { Config, ListStrategy } from '../../src/config.js';

/** The shared key, the service's own AWS secret and external id: none of them may ever appear in an answer. */
export const SHARED_KEY = 'correct-horse-battery-staple';
export const BASE_AKID = 'AKIAEXAMPLEBASEKEY01';
export const BASE_SECRET = 'BaseSecretKey/DoNotLeak+0123456789abcdefXYZ';
export const EXTERNAL_ID = 'external-id-0042';
export const ROLE = 'SpinupECRRole';
export const REGION = 'us-east-1';

/** A valid X-Auth-Token (bcrypt cost 4 keeps the tests fast). */
export const TOKEN = bcrypt.hashSync(SHARED_KEY, 4);
export const auth = { 'x-auth-token': TOKEN };

/** A fresh 12-digit account per call: moto keeps ECR state per account, so test files do not meet. */
export function newAccount(): string {
  return String(randomInt(100_000_000_000, 999_999_999_999));
}

export function motoEndpoint(): string {
  return inject('motoEndpoint');
}

function testConfig(
  opts: { org?: string; listStrategy?: ListStrategy; sessionDuration?: number; deadlineMs?: number } = {},
): Pick<Config, 'org' | 'token' | 'aws'> {
  return {
    org: opts.org ?? 'spindev',
    token: SHARED_KEY,
    aws: {
      region: REGION,
      role: ROLE,
      externalId: EXTERNAL_ID,
      credentials: { accessKeyId: BASE_AKID, secretAccessKey: BASE_SECRET },
      sessionDurationSeconds: opts.sessionDuration ?? 3600,
      deadlineMs: opts.deadlineMs ?? 25_000,
      listStrategy: opts.listStrategy ?? 'describe',
    },
  };
}

/** The service against moto (or against `aws.endpoint`/`aws.requestHandler` when given). */
export function testApp(
  opts: {
    org?: string;
    listStrategy?: ListStrategy;
    sessionDuration?: number;
    deadlineMs?: number;
    aws?: AwsOverrides;
    /** Where the app's log lines go (default: none). */
    logStream?: { write(line: string): void };
  } = {},
): Promise<App> {
  return buildApp({
    config: testConfig(opts),
    logger: opts.logStream ? { level: 'info', stream: opts.logStream } : false,
    defaultMetrics: false,
    version: { version: '9.8.7', githash: 'abc1234', buildstamp: '2026-01-02T03:04:05Z' },
    aws: { endpoint: motoEndpoint(), ...opts.aws },
  });
}

/** The sum of a metric's samples matching `labels`. */
export async function metric(app: App, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = app.metrics.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values
    .filter((v) => !('metricName' in v && v.metricName && v.metricName !== name))
    .filter((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

/** An ECR client of the account, straight to moto (not through the service): test setup and checks. */
export async function directEcr(account: string): Promise<ECRClient> {
  const endpoint = motoEndpoint();
  const sts = new STSClient({ region: REGION, endpoint, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
  const out = await sts.send(new AssumeRoleCommand({ RoleArn: `arn:aws:iam::${account}:role/test-admin`, RoleSessionName: 'test' }));
  const c = out.Credentials!;
  return new ECRClient({
    region: REGION,
    endpoint,
    credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! },
  });
}

/** Whether moto holds the repository, asked straight (not through the service). */
export async function repositoryExists(ecr: ECRClient, repositoryName: string): Promise<boolean> {
  try {
    await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [repositoryName] }));
    return true;
  } catch (err) {
    if ((err as Error).name === 'RepositoryNotFoundException') return false;
    throw err;
  }
}

/**
 * A minimal Docker image manifest whose config digest makes it unique; with one layer, which
 * moto's image scans need to report findings.
 */
export function manifest(seed: number): string {
  const digest = `sha256:${seed.toString(16).padStart(64, '0')}`;
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: 100 + seed, digest },
    layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: 10, digest }],
  });
}

/** A repository of another org (`orgb`), made straight in moto, with one image tagged v1. */
export async function otherOrgsRepository(ecr: ECRClient, group: string, name: string, seed: number): Promise<void> {
  const repositoryName = `${group}/${name}`;
  await ecr.send(
    new CreateRepositoryCommand({
      repositoryName,
      tags: [
        { Key: 'Name', Value: repositoryName },
        { Key: 'spinup:org', Value: 'orgb' },
        { Key: 'spinup:spaceid', Value: group },
      ],
    }),
  );
  await ecr.send(new PutImageCommand({ repositoryName, imageManifest: manifest(seed), imageTag: 'v1' }));
}

/** Creates the repository `grp/app` in `account` through the service, as a test's starting point. */
export async function createGrpApp(app: App, account: string): Promise<void> {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/ecr/${account}/repositories/grp`,
    headers: auth,
    payload: { RepositoryName: 'app' },
  });
  expect(res.statusCode, res.body).toBe(200);
}
