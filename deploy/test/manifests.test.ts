import { validateWorkflow } from '@action-validator/core';
import { Certificate, Issuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ValidatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

/** The Kubernetes (and cert-manager) schema of each kind the bases render. */
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration': ValidatingWebhookConfiguration,
  'cert-manager.io/v1/Certificate': Certificate,
  'cert-manager.io/v1/Issuer': Issuer,
};

function render(base: string): any[] {
  const out = execFileSync('kubectl', ['kustomize', path.join(ROOT, 'deploy', base)], { encoding: 'utf8' });
  return parseAllDocuments(out).map((d) => d.toJS());
}

function validate(object: any): void {
  const Model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (!Model) throw new Error(`no schema for ${object.apiVersion}/${object.kind}`);
  new Model(object).validate();
}

const container = (objects: any[], name: string) =>
  objects.find((o) => o.kind === 'Deployment').spec.template.spec.containers.find((c: any) => c.name === name);

describe.each([
  ['imagelist/base', 'imagelist', '/health/live', '/health/ping'],
  ['ecr-api/base', 'ecr-api', '/v1/ecr/ping', '/v1/ecr/ping'],
])('kubectl kustomize %s', (base, name, live, ready) => {
  const objects = render(base);

  it('renders objects that all pass the Kubernetes schemas', () => {
    expect(objects.length).toBeGreaterThan(5);
    for (const object of objects) expect(() => validate(object), `${object.kind}/${object.metadata?.name}`).not.toThrow();
  });

  it('runs non-root on a read-only root filesystem with no capabilities', () => {
    const pod = objects.find((o) => o.kind === 'Deployment').spec.template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container(objects, name).securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  });

  it('probes the real health routes, and selects its own pods', () => {
    const c = container(objects, name);
    expect(c.livenessProbe.httpGet.path).toBe(live);
    expect(c.readinessProbe.httpGet.path).toBe(ready);
    const deployment = objects.find((o) => o.kind === 'Deployment');
    expect(deployment.spec.selector.matchLabels['app.kubernetes.io/name']).toBe(name);
    expect(objects.find((o) => o.kind === 'Service').spec.selector['app.kubernetes.io/name']).toBe(name);
    expect(objects.find((o) => o.kind === 'PodDisruptionBudget').spec.selector.matchLabels['app.kubernetes.io/name']).toBe(name);
  });
});

describe('imagelist admission wiring', () => {
  const objects = render('imagelist/base');
  const webhook = objects.find((o) => o.kind === 'ValidatingWebhookConfiguration').webhooks[0];

  it('sends every workload kind, ephemeral containers included, to /admission/validate over HTTPS', () => {
    expect(webhook.clientConfig.service).toEqual({ name: 'imagelist', namespace: 'imagelist', path: '/admission/validate', port: 443 });
    const resources = webhook.rules.flatMap((r: any) => r.resources);
    for (const r of ['pods', 'pods/ephemeralcontainers', 'deployments', 'statefulsets', 'daemonsets', 'replicasets', 'jobs', 'cronjobs']) {
      expect(resources).toContain(r);
    }
    expect(webhook.failurePolicy).toBe('Fail');
    const env = Object.fromEntries(container(objects, 'imagelist').env.map((e: any) => [e.name, e.value]));
    expect(env.IMAGELIST_CERTFILE).toBe('/etc/imagelist/tls/tls.crt');
  });

  it('mounts the tokens Secret as a directory, so updates reach the running pod', () => {
    const mount = container(objects, 'imagelist').volumeMounts.find((m: any) => m.name === 'tokens');
    expect(mount.subPath).toBeUndefined();
  });
});

describe('the validator itself', () => {
  it('rejects a broken object', () => {
    const objects = render('imagelist/base');
    const broken = structuredClone(objects.find((o) => o.kind === 'Deployment'));
    broken.spec.replicas = 'two';
    expect(() => validate(broken)).toThrow();
  });
});

describe('GitHub workflows', () => {
  const dir = path.join(ROOT, '.github', 'workflows');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yml'));

  it('has CI and release per service', () => {
    expect(files.sort()).toEqual(['ecr-api-ci.yml', 'ecr-api-release.yml', 'imagelist-ci.yml', 'imagelist-release.yml']);
  });

  it.each(files)('%s passes action-validator', (file) => {
    const state = validateWorkflow(readFileSync(path.join(dir, file), 'utf8'));
    expect(state.errors).toEqual([]);
  });

  it('the validator rejects a broken workflow', () => {
    expect(validateWorkflow('on: push\njobs:\n  x:\n    steps: 3\n').errors.length).toBeGreaterThan(0);
  });

  it('CI reruns a service when a shared package changes', () => {
    for (const svc of ['imagelist', 'ecr-api']) {
      const text = readFileSync(path.join(dir, `${svc}-ci.yml`), 'utf8');
      expect(text).toContain(`services/${svc}/**`);
      expect(text).toContain('packages/**');
      expect(text).not.toContain(`services/${svc === 'imagelist' ? 'ecr-api' : 'imagelist'}/**`);
    }
  });
});
