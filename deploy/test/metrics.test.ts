import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { only, render, ROOT, type K8sObject } from './support/kustomize.js';
import { analyse, expressionsOf, exposition, withoutGrafanaVariables, type PromqlUse } from './support/promql.js';
import { startMoto, startService, type Running } from './support/services.js';

// Every metric the alerts and dashboards read must be one the built service really exposes: each
// service is started as its container runs it (imagelist on PostgreSQL, ecr-api against moto),
// made to serve the routes the rules watch, and scraped.

/** Metrics that come from elsewhere: Prometheus itself and kube-state-metrics. */
const EXTERNAL = (metric: string) => metric === 'up' || metric.startsWith('kube_');
/** Labels Prometheus attaches to every series of a ServiceMonitor target. */
const TARGET_LABELS = ['job', 'instance', 'namespace', 'service', 'pod', 'container', 'endpoint'];

function uses(objects: K8sObject[]): { where: string; use: PromqlUse }[] {
  return expressionsOf(objects).map(({ where, expr }) => ({ where, use: analyse(withoutGrafanaVariables(expr)) }));
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return res.text();
}

/** Checks each expression's metrics and matcher labels against a scrape; answers the findings. */
function missing(objects: K8sObject[], scraped: ReturnType<typeof exposition>, honorLabels: boolean): string[] {
  const problems: string[] = [];
  for (const { where, use } of uses(objects)) {
    for (const metric of use.metrics) {
      if (EXTERNAL(metric)) continue;
      const found = scraped.get(metric);
      if (!found) {
        problems.push(`${where}: ${metric} is not on /metrics`);
        continue;
      }
      for (const label of use.matchers.get(metric) ?? []) {
        if (TARGET_LABELS.includes(label) && !found.labels.has(label)) continue;
        if (!found.labels.has(label)) problems.push(`${where}: ${metric} has no label ${label}`);
      }
      // A scraped label named like a target label is renamed exported_<label> unless the
      // ServiceMonitor honours the scraped labels.
      for (const label of found.labels)
        if (TARGET_LABELS.includes(label) && !honorLabels)
          problems.push(`${where}: ${metric}'s label ${label} clashes with a target label`);
    }
  }
  return problems;
}

// On PostgreSQL, as deployed: the in-memory index (and its gauges) needs LISTEN/NOTIFY, which the
// embedded database imagelist falls back to without DATABASE_URL does not give it. CI sets it.
describe.skipIf(!process.env.DATABASE_URL)('imagelist /metrics has every metric its alerts and dashboard read', () => {
  let service: Running;
  let dropDatabase: (() => Promise<void>) | undefined;
  let scraped: ReturnType<typeof exposition>;
  const monitoring = () => render('imagelist/monitoring');

  beforeAll(async () => {
    // A database of this file's own on the DATABASE_URL server, as imagelist's tests make them.
    const postgres = createRequire(path.join(ROOT, 'services', 'imagelist', 'package.json'))('postgres');
    const admin = postgres(process.env.DATABASE_URL, { max: 1, onnotice: () => {} });
    const name = `imagelist_deploy_${randomBytes(6).toString('hex')}`;
    await admin.unsafe(`CREATE DATABASE ${name}`);
    dropDatabase = async () => {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    };
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${name}`;
    service = await startService('imagelist', ['--listen', '127.0.0.1:0'], { DATABASE_URL: url.toString() });
    // The routes the rules and panels watch: the REST API and both admission endpoints.
    const put = await fetch(`${service.url}/images`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: `sha256:${'ab'.repeat(32)}`, name: 'quay.io/example/nginx', tags: ['v1'] }),
    });
    expect(put.status).toBe(200);
    expect((await fetch(`${service.url}/images`)).status).toBe(200);
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'apps' },
      spec: { containers: [{ name: 'c', image: 'nginx' }] },
    };
    await fetch(`${service.url}/admission/validate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: {
          uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
          kind: { group: '', version: 'v1', kind: 'Pod' },
          resource: { group: '', version: 'v1', resource: 'pods' },
          operation: 'CREATE',
          namespace: 'apps',
          name: 'p',
          object: pod,
          userInfo: { username: 'test' },
        },
      }),
    });
    await fetch(`${service.url}/admission/imagereview`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'imagepolicy.k8s.io/v1alpha1',
        kind: 'ImageReview',
        spec: { containers: [{ image: 'nginx' }], namespace: 'apps' },
      }),
    });
    scraped = exposition(await scrape(`${service.url}/metrics`));
  }, 90_000);

  afterAll(async () => {
    await service?.stop();
    await dropDatabase?.();
  });

  it('every metric and label the PrometheusRule and the dashboard read', () => {
    const objects = monitoring();
    const honor = only(objects, 'ServiceMonitor').spec.endpoints[0].honorLabels === true;
    expect(missing(objects, scraped, honor)).toEqual([]);
  });

  it('the admission histograms have the buckets the latency alerts subtract (1 s and 2.5 s)', () => {
    const buckets = scraped.get('http_request_duration_seconds_bucket')!.samples.filter((s) => s.includes('route="/admission/validate"'));
    expect(buckets.some((s) => s.includes('le="1"'))).toBe(true);
    expect(buckets.some((s) => s.includes('le="2.5"'))).toBe(true);
    const rules = JSON.stringify(only(monitoring(), 'PrometheusRule').spec);
    for (const le of rules.matchAll(/le=\\"([^\\]+)\\"/g))
      expect(
        buckets.some((s) => s.includes(`le="${le[1]}"`)),
        le[1],
      ).toBe(true);
  });

  it('the check finds a metric the service does not have', () => {
    const objects = structuredClone(monitoring());
    only(objects, 'PrometheusRule').spec.groups[0].rules[0].expr = 'imagelist_index_freshness == 0';
    expect(missing(objects, scraped, false)).toContain('alert ImagelistDown: imagelist_index_freshness is not on /metrics');
    only(objects, 'PrometheusRule').spec.groups[0].rules[0].expr = 'imagelist_database_up{database="x"} == 0';
    expect(missing(objects, scraped, false)).toContain('alert ImagelistDown: imagelist_database_up has no label database');
  });
});

describe('ecr-api /v1/ecr/metrics has every metric its alerts and dashboard read', () => {
  let moto: Running;
  let service: Running;
  let dir: string;
  let scraped: ReturnType<typeof exposition>;
  const monitoring = () => render('ecr-api/monitoring');

  beforeAll(async () => {
    moto = await startMoto();
    dir = mkdtempSync(path.join(tmpdir(), 'ecr-api-deploy-'));
    const key = 'deploy-test-shared-key';
    const config = path.join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        listenAddress: '127.0.0.1:0',
        account: {
          region: 'us-east-1',
          akid: 'AKIAEXAMPLEBASEKEY01',
          secret: 'deploy-test-secret',
          externalId: 'deploy-test-external-id',
          role: 'SpinupRole',
        },
        token: key,
        org: 'spinorg',
        logLevel: 'info',
      }),
    );
    service = await startService('ecr-api', ['--config', config, '--aws-endpoint', moto.url, '--list-strategy', 'describe']);
    const bcrypt = createRequire(path.join(ROOT, 'services', 'ecr-api', 'package.json'))('bcryptjs') as {
      hashSync(s: string, rounds: number): string;
    };
    const headers = { 'x-auth-token': bcrypt.hashSync(key, 4), 'content-type': 'application/json' };
    const account = String(randomInt(100_000_000_000, 999_999_999_999));
    // AssumeRole, then ECR calls: a listing, a creation, and a lookup that AWS answers "not found".
    const base = `${service.url}/v1/ecr/${account}/repositories`;
    expect((await fetch(base, { headers })).status).toBe(200);
    expect((await fetch(`${base}/team`, { method: 'POST', headers, body: JSON.stringify({ RepositoryName: 'app' }) })).status).toBeLessThan(
      300,
    );
    expect((await fetch(`${base}/team/missing`, { headers })).status).toBe(404);
    scraped = exposition(await scrape(`${service.url}/v1/ecr/metrics`));
  }, 90_000);

  afterAll(async () => {
    await service?.stop();
    await moto?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every metric and label the PrometheusRule and the dashboard read', () => {
    const objects = monitoring();
    const honor = only(objects, 'ServiceMonitor').spec.endpoints[0].honorLabels === true;
    expect(missing(objects, scraped, honor)).toEqual([]);
  });

  it('AWS calls carry service, operation and outcome; AssumeRole its outcome', () => {
    expect([...scraped.get('aws_api_calls_total')!.labels].sort()).toEqual(['operation', 'outcome', 'service']);
    expect(scraped.get('aws_api_calls_total')!.samples.some((s) => s.includes('outcome="RepositoryNotFoundException"'))).toBe(true);
    expect(scraped.get('sts_assume_role_total')!.samples.some((s) => s.includes('outcome="success"'))).toBe(true);
  });

  it("the aws metrics' `service` label would clash with the target label without honorLabels", () => {
    expect(missing(monitoring(), scraped, false).join('\n')).toMatch(/aws_api_calls_total's label service clashes with a target label/);
  });
});
