import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

export const ROOT = path.resolve(import.meta.dirname, '..', '..', '..');
export const DEPLOY = path.join(ROOT, 'deploy');

/** Where deploy/INSTALL-TOOLS.sh puts its pinned kubectl. */
const PINNED_KUBECTL = path.join(process.env.PLATFORM_TOOLS_DIR || '/opt/platform-tools', 'bin', 'kubectl');

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: any;
}

function kustomizeMajor(bin: string): number | undefined {
  try {
    const out = execFileSync(bin, ['version', '--client', '-o', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const version = (JSON.parse(out) as { kustomizeVersion?: string }).kustomizeVersion ?? '';
    const major = /^v?(\d+)\./.exec(version)?.[1];
    return major === undefined ? undefined : Number(major);
  } catch {
    return undefined;
  }
}

let kubectlPath: string | undefined;

/**
 * The kubectl that renders the bases: $KUBECTL, else the one deploy/INSTALL-TOOLS.sh installs,
 * else `kubectl` on PATH. Its built-in kustomize must be v5 or later (Debian's kubectl 1.20
 * carries v2, which knows neither `labels:` nor the patch syntax used here).
 */
export function kubectl(): string {
  if (kubectlPath) return kubectlPath;
  const candidates = process.env.KUBECTL ? [process.env.KUBECTL] : [...(existsSync(PINNED_KUBECTL) ? [PINNED_KUBECTL] : []), 'kubectl'];
  for (const bin of candidates) {
    const major = kustomizeMajor(bin);
    if (major !== undefined && major >= 5) return (kubectlPath = bin);
  }
  throw new Error(`no kubectl with kustomize v5+ (tried ${candidates.join(', ')}): run deploy/INSTALL-TOOLS.sh, or set KUBECTL`);
}

/** `kubectl kustomize deploy/<dir>`, parsed: every rendered object. */
export function render(dir: string): K8sObject[] {
  const out = execFileSync(kubectl(), ['kustomize', path.join(DEPLOY, dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseAllDocuments(out).map((doc) => {
    if (doc.errors.length) throw new Error(`kustomize output for ${dir} is not valid YAML: ${doc.errors[0]!.message}`);
    return doc.toJS() as K8sObject;
  });
}

export const id = (o: K8sObject) => `${o.kind}/${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name}`;

export function only(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}
