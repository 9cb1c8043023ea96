import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { DEPLOY, id, kubectl, only, render, ROOT, type K8sObject } from './support/kustomize.js';
import { invalid } from './support/schema.js';

const SERVICES = ['imagelist', 'ecr-api'] as const;
const CHANGELOG_SECTION = path.join(DEPLOY, 'release', 'changelog-section.sh');
const RENDER_MANIFEST = path.join(DEPLOY, 'release', 'render-manifest.sh');
const STANDARD_LABELS = ['name', 'instance', 'version', 'component', 'part-of', 'managed-by'].map((l) => `app.kubernetes.io/${l}`);
const DIGEST = `sha256:${'9f86d081884c7d65'.repeat(4)}`;

const packageVersion = (svc: string) =>
  (JSON.parse(readFileSync(path.join(ROOT, 'services', svc, 'package.json'), 'utf8')) as { version: string }).version;
const changelogOf = (svc: string) => readFileSync(path.join(ROOT, 'services', svc, 'CHANGELOG.md'), 'utf8');

function section(file: string, version: string) {
  const r = spawnSync('bash', [CHANGELOG_SECTION, file, version], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Objects of the selectors that must stay the same across versions (they are immutable or select pods). */
function selectors(objects: K8sObject[]): Record<string, unknown> {
  return Object.fromEntries(
    objects
      .filter((o) => ['Deployment', 'Service', 'PodDisruptionBudget', 'NetworkPolicy', 'ServiceMonitor'].includes(o.kind))
      .map((o) => [id(o), o.spec.selector ?? o.spec.podSelector]),
  );
}

describe('deploy/release/changelog-section.sh', () => {
  let dir: string;
  let file: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'changelog-'));
    file = path.join(dir, 'CHANGELOG.md');
    writeFileSync(
      file,
      [
        '# Changelog',
        '',
        '## [Unreleased]',
        '',
        '## [1.10.0] - 2026-12-01',
        '',
        '### Added',
        '',
        '- ten',
        '',
        '',
        '## [1.1.0] - 2026-11-01',
        '### Fixed',
        '- one, see [1.0.0]',
        '',
        '## [1.0.0-rc.1] - 2026-10-01',
        '',
        '## [1.0.0] - 2026-09-01',
        '- first',
        '',
        '[Unreleased]: https://example.com/compare/v1.10.0...HEAD',
        '[1.10.0]: https://example.com/v1.10.0',
        '[1.0.0]: https://example.com/v1.0.0',
        '',
      ].join('\n'),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("prints that version's section only, without its heading, blank edges or the link references", () => {
    expect(section(file, '1.10.0')).toMatchObject({ status: 0, stdout: '### Added\n\n- ten\n' });
    expect(section(file, '1.1.0').stdout).toBe('### Fixed\n- one, see [1.0.0]\n');
    expect(section(file, '1.0.0').stdout).toBe('- first\n');
  });

  it('fails for a version it does not have (1.1 is not 1.1.0 nor 1.10.0), or an empty section', () => {
    for (const v of ['1.1', '1.0', '2.0.0', '1.0.0-rc.1', 'Unreleased']) {
      const r = section(file, v);
      expect(r.status, v).toBe(1);
      expect(r.stderr).toContain(`for version ${v}`);
    }
    expect(section(file, '').status).toBe(1);
    expect(spawnSync('bash', [CHANGELOG_SECTION, file], { encoding: 'utf8' }).status).toBe(2);
  });
});

describe.each(SERVICES)('%s CHANGELOG.md (Keep a Changelog)', (svc) => {
  it('has Unreleased first, then versions newest first with dates, the latest the package.json version', () => {
    const headings = [...changelogOf(svc).matchAll(/^## (.*)$/gm)].map((m) => m[1]!);
    expect(headings[0]).toBe('[Unreleased]');
    const versions = headings.slice(1).map((h) => /^\[(\d+\.\d+\.\d+(?:-[\w.]+)?)\] - (\d{4}-\d\d-\d\d)$/.exec(h));
    for (const [i, v] of versions.entries()) expect(v, headings[i + 1]).not.toBeNull();
    expect(versions[0]![1]).toBe(packageVersion(svc));
  });

  it('groups changes under the six kinds of change, and links every version', () => {
    const text = changelogOf(svc);
    for (const m of text.matchAll(/^### (.*)$/gm))
      expect(['Added', 'Changed', 'Deprecated', 'Removed', 'Fixed', 'Security']).toContain(m[1]);
    for (const m of text.matchAll(/^## \[([^\]]+)\]/gm))
      expect(text).toMatch(new RegExp(`^\\[${m[1]!.replace(/\./g, '\\.')}\\]: https://`, 'm'));
    expect(section(path.join(ROOT, 'services', svc, 'CHANGELOG.md'), packageVersion(svc)).status).toBe(0);
  });
});

describe.each(SERVICES)('%s release manifests (deploy/release/render-manifest.sh)', (svc) => {
  let dir: string;
  const rendered = (version: string, image: string) => {
    const out = path.join(dir, version);
    execFileSync('bash', [RENDER_MANIFEST, svc, version, image, out], { env: { ...process.env, KUBECTL: kubectl() }, encoding: 'utf8' });
    const load = (f: string) => parseAllDocuments(readFileSync(path.join(out, f), 'utf8')).map((d) => d.toJS() as K8sObject);
    return { install: load(`${svc}.yaml`), monitoring: load(`${svc}-monitoring.yaml`) };
  };
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'release-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('pin the image by digest and label every object with the version; every object passes the schemas', async () => {
    const { install, monitoring } = rendered('1.4.0-rc.2', `ghcr.io/acme/${svc}@${DIGEST}`);
    expect(only(install, 'Deployment').spec.template.spec.containers[0].image).toBe(`ghcr.io/acme/${svc}@${DIGEST}`);
    for (const o of [...install, ...monitoring]) {
      expect(o.metadata.labels?.['app.kubernetes.io/version'], id(o)).toBe('1.4.0-rc.2');
    }
    expect(only(install, 'Deployment').spec.template.metadata.labels['app.kubernetes.io/version']).toBe('1.4.0-rc.2');
    expect(monitoring.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'PrometheusRule', 'ServiceMonitor']);
    expect(await invalid([...install, ...monitoring])).toEqual([]);
    // A tag instead of a digest works too; neither is refused silently.
    expect(only(rendered('1.4.0', `ghcr.io/acme/${svc}:1.4.0`).install, 'Deployment').spec.template.spec.containers[0].image).toBe(
      `ghcr.io/acme/${svc}:1.4.0`,
    );
    expect(spawnSync('bash', [RENDER_MANIFEST, svc, '1.4.0', `ghcr.io/acme/${svc}`, dir], { encoding: 'utf8' }).status).toBe(2);
  });

  it('carry no Secret, and refer to the ones deploy/README.md has you create, by their plain names', () => {
    const { install } = rendered('1.4.0', `ghcr.io/acme/${svc}@${DIGEST}`);
    expect(install.filter((o) => o.kind === 'Secret')).toEqual([]);
    const pod = only(install, 'Deployment').spec.template.spec;
    const refs = [
      ...pod.volumes.filter((v: any) => v.secret).map((v: any) => v.secret.secretName),
      ...pod.containers[0].env.filter((e: any) => e.valueFrom?.secretKeyRef).map((e: any) => e.valueFrom.secretKeyRef.name),
    ];
    const issued = install.filter((o) => o.kind === 'Certificate').map((o) => o.spec.secretName);
    const created = refs.filter((r) => !issued.includes(r)).sort();
    expect(created).toEqual(svc === 'imagelist' ? ['imagelist-database', 'imagelist-tokens'] : ['ecr-api-config']);
    const readme = readFileSync(path.join(DEPLOY, 'README.md'), 'utf8');
    for (const name of created) expect(readme).toMatch(new RegExp(`kubectl -n ${svc} create secret generic ${name} `));
  });

  it('keep the selectors from version to version (they are immutable), with the name label only', () => {
    const a = rendered('1.0.0', `ghcr.io/acme/${svc}@${DIGEST}`).install;
    const b = rendered('2.0.0', `ghcr.io/acme/${svc}:2.0.0`).install;
    expect(selectors(a)).toEqual(selectors(b));
    expect(only(a, 'Deployment').spec.selector).toEqual({ matchLabels: { 'app.kubernetes.io/name': svc } });
    expect(selectors(render(`${svc}/base`))).toEqual(selectors(a));
  });
});

describe('standard labels', () => {
  const dirs = SERVICES.flatMap((s) => [`${s}/base`, `${s}/overlays/example`, `${s}/monitoring`, `${s}/release`]);

  it.each(dirs)('%s: every object carries app.kubernetes.io/{name,instance,version,component,part-of,managed-by}', (dir) => {
    for (const o of render(dir)) for (const label of STANDARD_LABELS) expect(o.metadata.labels?.[label], `${id(o)} ${label}`).toBeTruthy();
  });

  it.each(SERVICES)("%s: the base's version is the package.json version, in the base and its monitoring", (svc) => {
    for (const dir of [`${svc}/base`, `${svc}/monitoring`])
      for (const o of render(dir)) expect(o.metadata.labels?.['app.kubernetes.io/version'], id(o)).toBe(packageVersion(svc));
    expect(only(render(`${svc}/base`), 'Deployment').spec.template.spec.containers[0].image).toBe(
      `ghcr.io/OWNER/${svc}:${packageVersion(svc)}`,
    );
  });
});

describe.each(SERVICES)('%s example overlay', (svc) => {
  it('labels every object with the version of the image it sets', () => {
    const objects = render(`${svc}/overlays/example`);
    const tag = /:([^:@]+)$/.exec(only(objects, 'Deployment').spec.template.spec.containers[0].image)![1];
    for (const o of objects) expect(o.metadata.labels?.['app.kubernetes.io/version'], id(o)).toBe(tag);
  });
});

describe('imagelist keeps running under node pressure', () => {
  it('is system-cluster-critical, which a ResourceQuota admits in its namespace', () => {
    const objects = render('imagelist/base');
    const deployment = only(objects, 'Deployment');
    expect(deployment.spec.template.spec.priorityClassName).toBe('system-cluster-critical');
    const quota = only(objects, 'ResourceQuota');
    expect(quota.metadata.namespace).toBe(deployment.metadata.namespace);
    expect(quota.spec.scopeSelector.matchExpressions).toEqual([
      { operator: 'In', scopeName: 'PriorityClass', values: ['system-cluster-critical'] },
    ]);
    // Room for every replica and the rollout's surge pod.
    expect(Number(quota.spec.hard.pods)).toBeGreaterThanOrEqual(deployment.spec.replicas + deployment.spec.strategy.rollingUpdate.maxSurge);
  });
});

describe('renaming the namespace is one field of the example overlay', () => {
  const renamed = (svc: string, namespace: string): K8sObject[] => {
    const overlays = path.join(DEPLOY, svc, 'overlays');
    const copy = mkdtempSync(path.join(overlays, '.renamed-'));
    try {
      cpSync(path.join(overlays, 'example'), copy, { recursive: true });
      const file = path.join(copy, 'kustomization.yaml');
      const text = readFileSync(file, 'utf8');
      expect(text.match(/^namespace: .*$/gm)).toEqual([`namespace: ${svc}`]);
      writeFileSync(file, text.replace(/^namespace: .*$/m, `namespace: ${namespace}`));
      return render(path.relative(DEPLOY, copy));
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  };

  it.each(['imagelist', 'ecr-api'])('%s: every namespaced object moves, and nothing refers to the old namespace', async (svc) => {
    const objects = renamed(svc, 'platform-x');
    expect(await invalid(objects)).toEqual([]);
    expect(only(objects, 'Namespace').metadata.name).toBe('platform-x');
    for (const o of objects)
      if (!['Namespace', 'ValidatingWebhookConfiguration'].includes(o.kind)) expect(o.metadata.namespace, id(o)).toBe('platform-x');
    // The old name survives only as object names, labels and the image: no DNS name, no reference.
    const text = JSON.stringify(objects);
    expect(text).not.toMatch(new RegExp(`\\.${svc}\\.svc|\\b${svc}/${svc}-|"${svc}\\.${svc}"|"namespace":"${svc}"`));
  });

  it('imagelist: the webhook calls the renamed Service, skips its namespace, and its CA comes from the renamed Certificate', () => {
    const objects = renamed('imagelist', 'platform-x');
    const config = only(objects, 'ValidatingWebhookConfiguration');
    const webhook = config.webhooks[0];
    expect(webhook.clientConfig.service.namespace).toBe('platform-x');
    expect(webhook.namespaceSelector.matchExpressions[0].values).toEqual(['kube-system', 'platform-x']);
    expect(config.metadata.annotations?.['cert-manager.io/inject-ca-from']).toBe('platform-x/imagelist-serving');
    expect(only(objects, 'Certificate', 'imagelist-serving').spec.dnsNames).toEqual([
      'imagelist',
      'imagelist.platform-x',
      'imagelist.platform-x.svc',
      'imagelist.platform-x.svc.cluster.local',
    ]);
    expect(only(objects, 'ServiceMonitor').spec.endpoints[0].tlsConfig.serverName).toBe('imagelist.platform-x.svc');
  });
});
