import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DEPLOY, kubectl, only, render } from './support/kustomize.js';

// The kube-apiserver's ImagePolicyWebhook files: not Kubernetes objects, so not in the
// kustomization; checked here against kubectl's own kubeconfig loader and the plugin's format.
const EXAMPLES = path.join(DEPLOY, 'imagelist', 'examples');
const read = (file: string) => parse(readFileSync(path.join(EXAMPLES, file), 'utf8'));

/** The kubeconfig as kubectl loads it: fields it does not know are dropped, so compare. */
function kubectlView(file: string): unknown {
  const out = execFileSync(kubectl(), ['config', 'view', '--kubeconfig', file, '-o', 'json'], {
    encoding: 'utf8',
    env: { ...process.env, KUBECONFIG: '' },
  });
  const view = JSON.parse(out) as Record<string, unknown>;
  delete view.preferences;
  return view;
}

describe('ImagePolicyWebhook example', () => {
  it('the kubeconfig loads in kubectl with every field kept', () => {
    expect(kubectlView(path.join(EXAMPLES, 'kubeconfig.yaml'))).toEqual(read('kubeconfig.yaml'));
  });

  it('the comparison catches a misspelt kubeconfig field', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kubeconfig-'));
    const broken = path.join(dir, 'kubeconfig.yaml');
    const text = readFileSync(path.join(EXAMPLES, 'kubeconfig.yaml'), 'utf8').replace(
      /^(\s+)certificate-authority:/m,
      '$1certificate-authorty:',
    );
    try {
      expect(text).toMatch(/^\s+certificate-authorty: /m);
      writeFileSync(broken, text);
      expect(kubectlView(broken)).not.toEqual(parse(text));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the kubeconfig points at /admission/imagereview over HTTPS, on a name the serving certificate carries', () => {
    const config = read('kubeconfig.yaml');
    const context = config.contexts.find((c: any) => c.name === config['current-context']).context;
    const cluster = config.clusters.find((c: any) => c.name === context.cluster).cluster;
    const url = new URL(cluster.server);
    expect(url.protocol).toBe('https:');
    expect(url.pathname).toBe('/admission/imagereview');
    expect(cluster['certificate-authority']).toMatch(/^\/etc\/kubernetes\//);
    const objects = render('imagelist/base');
    expect(only(objects, 'Certificate', 'imagelist-serving').spec.dnsNames).toContain(url.hostname);
    expect(Number(url.port || 443)).toBe(only(objects, 'Service', 'imagelist').spec.ports[0].port);
  });

  it('the AdmissionConfiguration configures ImagePolicyWebhook with exactly its known fields', () => {
    const config = read('admission-configuration.yaml');
    expect(config.apiVersion).toBe('apiserver.config.k8s.io/v1');
    expect(config.kind).toBe('AdmissionConfiguration');
    expect(config.plugins.map((p: any) => p.name)).toEqual(['ImagePolicyWebhook']);
    const policy = config.plugins[0].configuration.imagePolicy;
    expect(Object.keys(config.plugins[0].configuration)).toEqual(['imagePolicy']);
    expect(Object.keys(policy).sort()).toEqual(['allowTTL', 'defaultAllow', 'denyTTL', 'kubeConfigFile', 'retryBackoff']);
    expect(path.basename(policy.kubeConfigFile)).toBe('kubeconfig.yaml');
    expect(path.isAbsolute(policy.kubeConfigFile)).toBe(true);
    for (const k of ['allowTTL', 'denyTTL', 'retryBackoff']) expect(Number.isInteger(policy[k]) && policy[k] > 0, k).toBe(true);
    expect(policy.defaultAllow).toBe(false);
  });

  it('no kustomization deploys the examples', () => {
    const dirs = ['imagelist/base', 'imagelist/overlays/example'];
    for (const dir of dirs) {
      const k = parse(readFileSync(path.join(DEPLOY, dir, 'kustomization.yaml'), 'utf8'));
      expect(
        (k.resources as string[]).some((r) => r.includes('examples')),
        dir,
      ).toBe(false);
    }
    expect(readdirSync(EXAMPLES).sort()).toEqual(['admission-configuration.yaml', 'kubeconfig.yaml']);
  });
});
