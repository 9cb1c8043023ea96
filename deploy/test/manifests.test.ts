import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DEPLOY, id, only, render, type K8sObject } from './support/kustomize.js';
import { invalid, validateObjects } from './support/schema.js';

const KUSTOMIZATIONS = ['imagelist/base', 'imagelist/overlays/example', 'ecr-api/base', 'ecr-api/overlays/example'];
const rendered = new Map<string, K8sObject[]>();
let problems: string[] = [];

beforeAll(async () => {
  for (const dir of KUSTOMIZATIONS) rendered.set(dir, render(dir));
  // Validate everything at once: one TypeScript program for all objects.
  problems = await invalid([...rendered.values()].flat());
});

const objectsOf = (dir: string) => rendered.get(dir)!;
const deploymentOf = (dir: string) => only(objectsOf(dir), 'Deployment');
const podOf = (dir: string) => deploymentOf(dir).spec.template.spec;
const containerOf = (dir: string) => podOf(dir).containers[0];
const envOf = (dir: string): Record<string, any> =>
  Object.fromEntries(containerOf(dir).env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('kubectl kustomize', () => {
  it('renders every base and overlay, and every object passes the Kubernetes / cert-manager schemas (strict)', () => {
    for (const dir of KUSTOMIZATIONS) expect(objectsOf(dir).length, dir).toBeGreaterThan(6);
    expect(problems).toEqual([]);
  });

  it('puts every namespaced object into the service namespace', () => {
    for (const [dir, ns] of KUSTOMIZATIONS.map((d) => [d, d.split('/')[0]!] as const)) {
      for (const o of objectsOf(dir)) {
        if (o.kind === 'Namespace' || o.kind === 'ValidatingWebhookConfiguration') expect(o.metadata.namespace, id(o)).toBeUndefined();
        else expect(o.metadata.namespace, `${dir}: ${id(o)}`).toBe(ns);
      }
    }
  });
});

describe.each(
  [
    { dir: 'imagelist/base', name: 'imagelist', port: 8443, scheme: 'HTTPS', live: '/health/live', ready: '/health/ready' },
    { dir: 'imagelist/overlays/example', name: 'imagelist', port: 8443, scheme: 'HTTPS', live: '/health/live', ready: '/health/ready' },
    { dir: 'ecr-api/base', name: 'ecr-api', port: 8080, scheme: 'HTTP', live: '/v1/ecr/ping', ready: '/v1/ecr/ping' },
    { dir: 'ecr-api/overlays/example', name: 'ecr-api', port: 8080, scheme: 'HTTP', live: '/v1/ecr/ping', ready: '/v1/ecr/ping' },
  ].map((c) => [c.dir, c] as const),
)('%s', (dir, { name, port, scheme, live, ready }) => {
  it('runs 2 replicas, rolling without losing capacity, spread over nodes and zones', () => {
    const deployment = deploymentOf(dir);
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.spec.strategy.rollingUpdate).toEqual({ maxUnavailable: 0, maxSurge: 1 });
    const labels = deployment.spec.template.metadata.labels;
    const spread = podOf(dir).topologySpreadConstraints;
    expect(spread.map((c: any) => c.topologyKey)).toEqual(['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
    for (const c of spread) expect(matches(c.labelSelector.matchLabels, labels)).toBe(true);
    expect(matches(deployment.spec.selector.matchLabels, labels)).toBe(true);
  });

  it('runs non-root (the Dockerfile USER), read-only, without capabilities or a Kubernetes token', () => {
    const pod = podOf(dir);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(containerOf(dir).securityContext).toEqual({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.enableServiceLinks).toBe(false);
    const account = only(objectsOf(dir), 'ServiceAccount', pod.serviceAccountName);
    expect(account.automountServiceAccountToken).toBe(false);
    // The only writable place is an emptyDir on /tmp.
    const tmp = containerOf(dir).volumeMounts.find((m: any) => m.mountPath === '/tmp');
    expect(pod.volumes.find((v: any) => v.name === tmp.name).emptyDir.sizeLimit).toBeDefined();
    const user = /^USER (\d+):(\d+)$/m.exec(readFileSync(path.join(DEPLOY, '..', 'services', name, 'Dockerfile'), 'utf8'));
    expect(user?.slice(1).map(Number)).toEqual([pod.securityContext.runAsUser, pod.securityContext.runAsGroup]);
  });

  it('meets the "restricted" Pod Security Standard its namespace enforces', () => {
    const ns = only(objectsOf(dir), 'Namespace');
    expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    for (const v of podOf(dir).volumes)
      expect(
        Object.keys(v).filter((k) => k !== 'name'),
        v.name,
      ).toSatisfy((k: string[]) => ['secret', 'emptyDir'].includes(k[0]!));
  });

  it('probes the real health routes on the served port and scheme', () => {
    const c = containerOf(dir);
    const named = c.ports.find((p: any) => p.containerPort === port);
    expect(named).toBeDefined();
    expect(c.livenessProbe.httpGet).toEqual({ path: live, port: named.name, ...(scheme === 'HTTPS' ? { scheme } : {}) });
    expect(c.readinessProbe.httpGet).toEqual({ path: ready, port: named.name, ...(scheme === 'HTTPS' ? { scheme } : {}) });
    const listen = envOf(dir)[name === 'imagelist' ? 'IMAGELIST_LISTEN' : 'ECR_API_LISTEN'];
    expect(listen).toBe(`:${port}`);
  });

  it('requests CPU and memory and caps memory', () => {
    const { resources } = containerOf(dir);
    expect(Object.keys(resources.requests).sort()).toEqual(['cpu', 'memory']);
    expect(resources.limits.memory).toBeDefined();
  });

  it('has a Service, a PodDisruptionBudget and a NetworkPolicy that select its pods and port', () => {
    const labels = deploymentOf(dir).spec.template.metadata.labels;
    const portName = containerOf(dir).ports[0].name;
    const service = only(objectsOf(dir), 'Service', name);
    expect(matches(service.spec.selector, labels)).toBe(true);
    expect(service.spec.ports.map((p: any) => p.targetPort)).toEqual([portName]);
    const pdb = only(objectsOf(dir), 'PodDisruptionBudget');
    expect(matches(pdb.spec.selector.matchLabels, labels)).toBe(true);
    expect(pdb.spec.minAvailable ?? 2 - pdb.spec.maxUnavailable).toBeGreaterThanOrEqual(1);
    const policy = only(objectsOf(dir), 'NetworkPolicy');
    expect(matches(policy.spec.podSelector.matchLabels, labels)).toBe(true);
    expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.spec.ingress.flatMap((r: any) => r.ports.map((p: any) => p.port))).toEqual([port]);
    // DNS stays reachable, or nothing resolves.
    expect(policy.spec.egress.flatMap((r: any) => r.ports.map((p: any) => `${p.protocol}/${p.port}`))).toEqual(
      expect.arrayContaining(['UDP/53', 'TCP/53']),
    );
  });

  it('refers only to Secrets it renders or cert-manager issues', () => {
    const objects = objectsOf(dir);
    const secrets = new Set([
      ...objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name),
      ...objects.filter((o) => o.kind === 'Certificate').map((o) => o.spec.secretName),
    ]);
    const pod = podOf(dir);
    const refs = [
      ...pod.volumes.filter((v: any) => v.secret).map((v: any) => v.secret.secretName),
      ...containerOf(dir)
        .env.filter((e: any) => e.valueFrom?.secretKeyRef)
        .map((e: any) => e.valueFrom.secretKeyRef.name),
    ];
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) expect(secrets, ref).toContain(ref);
  });
});

describe('imagelist', () => {
  const dir = 'imagelist/base';
  const mountOf = (volume: string) => containerOf(dir).volumeMounts.find((m: any) => m.name === volume);

  it('mounts the tokens Secret as a directory (no subPath), so updates reach the running pods', () => {
    const mount = mountOf('tokens');
    expect(mount.subPath).toBeUndefined();
    expect(path.dirname(envOf(dir).IMAGELIST_TOKENS_FILE)).toBe(mount.mountPath);
    const secret = only(objectsOf(dir), 'Secret', 'imagelist-tokens');
    // A fixed name (no content hash), or an update would create a new Secret instead.
    expect(podOf(dir).volumes.find((v: any) => v.name === 'tokens').secret.secretName).toBe('imagelist-tokens');
    expect(Object.keys(secret.data ?? secret.stringData)).toEqual([path.basename(envOf(dir).IMAGELIST_TOKENS_FILE)]);
  });

  it('serves TLS from the cert-manager Certificate, reloadable from a directory mount', () => {
    const env = envOf(dir);
    const mount = mountOf('tls');
    expect(mount.subPath).toBeUndefined();
    expect([env.IMAGELIST_CERTFILE, env.IMAGELIST_KEYFILE]).toEqual([`${mount.mountPath}/tls.crt`, `${mount.mountPath}/tls.key`]);
    const serving = only(objectsOf(dir), 'Certificate', 'imagelist-serving');
    expect(podOf(dir).volumes.find((v: any) => v.name === 'tls').secret.secretName).toBe(serving.spec.secretName);
    // Signed by a CA of its own, so the webhook's caBundle survives the serving key's rotation.
    const issuer = only(objectsOf(dir), 'Issuer', serving.spec.issuerRef.name);
    const ca = only(objectsOf(dir), 'Certificate', 'imagelist-ca');
    expect(ca.spec.isCA).toBe(true);
    expect(issuer.spec.ca.secretName).toBe(ca.spec.secretName);
  });

  it('reads the database URL from a Secret, never from a literal', () => {
    expect(envOf(dir).DATABASE_URL.secretKeyRef).toMatchObject({ key: 'database-url' });
    const secret = only(objectsOf(dir), 'Secret', envOf(dir).DATABASE_URL.secretKeyRef.name);
    expect(Buffer.from(secret.data['database-url'], 'base64').toString()).toMatch(/^postgres(ql)?:\/\/.*CHANGE-ME/);
  });

  it('ships placeholder tokens that let nobody write', () => {
    const secret = only(objectsOf(dir), 'Secret', 'imagelist-tokens');
    const tokens = parse(Buffer.from(secret.data['tokens.yaml'], 'base64').toString());
    expect(tokens).toEqual({ tokens: [] });
  });

  it('exempts kube-system and its own namespace from ImagePolicyWebhook reviews', () => {
    const env = containerOf(dir).env;
    expect(env.find((e: any) => e.name === 'POD_NAMESPACE').valueFrom.fieldRef.fieldPath).toBe('metadata.namespace');
    expect(envOf(dir).IMAGELIST_ADMISSION_EXEMPT_NAMESPACES).toBe('kube-system,$(POD_NAMESPACE)');
    // $(VAR) expands only variables defined earlier in the list.
    expect(env.findIndex((e: any) => e.name === 'POD_NAMESPACE')).toBeLessThan(
      env.findIndex((e: any) => e.name === 'IMAGELIST_ADMISSION_EXEMPT_NAMESPACES'),
    );
  });

  describe('ValidatingWebhookConfiguration', () => {
    const webhookOf = (d: string) => only(objectsOf(d), 'ValidatingWebhookConfiguration').webhooks[0];

    it('calls /admission/validate on the rendered Service, over HTTPS, failing closed', () => {
      const webhook = webhookOf(dir);
      const service = only(objectsOf(dir), 'Service', 'imagelist');
      expect(webhook.clientConfig.service).toEqual({
        name: service.metadata.name,
        namespace: service.metadata.namespace,
        path: '/admission/validate',
        port: service.spec.ports[0].port,
      });
      expect(webhook.failurePolicy).toBe('Fail');
      expect(webhook.sideEffects).toBe('None');
      expect(webhook.admissionReviewVersions).toEqual(['v1']);
      expect(webhook.timeoutSeconds).toBeLessThanOrEqual(10);
    });

    it('sends Pods (ephemeral containers too) and every workload kind, on CREATE and UPDATE', () => {
      const rules = webhookOf(dir).rules;
      const covered = rules.flatMap((r: any) => r.resources.map((res: string) => `${r.apiGroups[0]}/${res}`));
      expect(covered).toEqual(
        expect.arrayContaining([
          '/pods',
          '/pods/ephemeralcontainers',
          'apps/deployments',
          'apps/statefulsets',
          'apps/daemonsets',
          'apps/replicasets',
          'batch/jobs',
          'batch/cronjobs',
        ]),
      );
      for (const r of rules) expect(r.operations).toEqual(['CREATE', 'UPDATE']);
    });

    it("skips kube-system and imagelist's own namespace", () => {
      const ns = only(objectsOf(dir), 'Namespace');
      const exprs = webhookOf(dir).namespaceSelector.matchExpressions;
      const byName = exprs.find((e: any) => e.key === 'kubernetes.io/metadata.name');
      expect(byName.operator).toBe('NotIn');
      expect(byName.values).toEqual(expect.arrayContaining(['kube-system', ns.metadata.name]));
      // And by label, which follows the namespace if an overlay renames it.
      const byLabel = exprs.find((e: any) => e.key === 'imagelist.platform/webhook');
      expect(byLabel).toEqual({ key: 'imagelist.platform/webhook', operator: 'NotIn', values: ['skip'] });
      expect(ns.metadata.labels?.['imagelist.platform/webhook']).toBe('skip');
    });

    it('gets its caBundle from the serving Certificate, whose names include the Service', () => {
      for (const d of ['imagelist/base', 'imagelist/overlays/example']) {
        const config = only(objectsOf(d), 'ValidatingWebhookConfiguration');
        const [ns, name] = (config.metadata.annotations?.['cert-manager.io/inject-ca-from'] ?? '').split('/');
        const cert = only(objectsOf(d), 'Certificate', name);
        expect(cert.metadata.namespace).toBe(ns);
        const { service } = config.webhooks[0].clientConfig;
        expect(cert.spec.dnsNames).toContain(`${service.name}.${service.namespace}.svc`);
      }
    });
  });

  it('example overlay: pinned image, audit mode, database-only egress', () => {
    const d = 'imagelist/overlays/example';
    expect(containerOf(d).image).toBe('ghcr.io/example-org/imagelist:1.2.3');
    expect(envOf(d).IMAGELIST_ADMISSION_AUDIT).toBe('true');
    expect(only(objectsOf(d), 'NetworkPolicy').spec.egress[0]).toEqual({
      to: [{ ipBlock: { cidr: '10.20.30.0/24' } }],
      ports: [{ port: 5432, protocol: 'TCP' }],
    });
  });
});

describe('ecr-api', () => {
  const dir = 'ecr-api/base';

  it('reads its JSON config from a mounted Secret, and with the committed placeholder refuses to start', () => {
    const c = containerOf(dir);
    expect(c.args).toEqual(['--config', '/etc/ecr-api/config.json']);
    const mount = c.volumeMounts.find((m: any) => m.mountPath === '/etc/ecr-api');
    expect(mount.subPath).toBeUndefined();
    const secretName = podOf(dir).volumes.find((v: any) => v.name === mount.name).secret.secretName;
    const config = JSON.parse(Buffer.from(only(objectsOf(dir), 'Secret', secretName).data['config.json'], 'base64').toString());
    expect(Object.keys(config).sort()).toEqual(['account', 'listenAddress', 'logLevel', 'org', 'token']);
    expect(Object.keys(config.account).every((k) => ['region', 'akid', 'secret', 'externalId', 'role'].includes(k))).toBe(true);
    // An empty token is a configuration error: no deployment with a well-known shared key.
    expect(config.token).toBe('');
  });

  it('example overlay: pinned image, IRSA role, ingress from client namespaces only', () => {
    const d = 'ecr-api/overlays/example';
    expect(containerOf(d).image).toBe('ghcr.io/example-org/ecr-api:1.2.3');
    expect(only(objectsOf(d), 'ServiceAccount').metadata.annotations?.['eks.amazonaws.com/role-arn']).toMatch(
      /^arn:aws:iam::\d{12}:role\//,
    );
    expect(only(objectsOf(d), 'NetworkPolicy').spec.ingress[0].from).toHaveLength(2);
  });
});

describe('the validator rejects what Kubernetes would', () => {
  it('a wrong type, an unknown field, a missing required field, an unknown kind', async () => {
    const deployment = () => structuredClone(deploymentOf('imagelist/base'));
    const wrongType = deployment();
    wrongType.spec.replicas = 'two';
    const typo = deployment();
    typo.spec.template.spec.containers[0].readinesProbe = typo.spec.template.spec.containers[0].readinessProbe;
    const typoTop = deployment();
    typoTop.spec.replica = 2;
    const noName = deployment();
    delete noName.spec.template.spec.containers[0].name;
    const badEnum = structuredClone(only(objectsOf('imagelist/base'), 'Service'));
    badEnum.spec.ports[0].protocol = 'HTTP';
    const certTypo = structuredClone(only(objectsOf('imagelist/base'), 'Certificate', 'imagelist-serving'));
    certTypo.spec.dnsName = certTypo.spec.dnsNames;
    const unknownKind = { apiVersion: 'apps/v1', kind: 'Deploymnt', metadata: { name: 'x' } };

    const [valid, ...results] = await validateObjects([deployment(), wrongType, typo, typoTop, noName, badEnum, certTypo, unknownKind]);
    expect(valid).toEqual([]);
    const [r1, r2, r3, r4, r5, r6, r7] = results.map((r) => r.join('\n'));
    expect(r1).toMatch(/schema: .*replicas must be integer/);
    expect(r2).toMatch(/strict: .*'"?readinesProbe"?' does not exist in type 'IContainer'/);
    expect(r3).toMatch(/strict: .*'"?replica"?' does not exist in type 'IDeploymentSpec'/);
    expect(r4).toMatch(/schema: .*containers\/0 must have required property '?name'?/);
    expect(r5).toMatch(/schema: .*protocol must be equal to one of the allowed values/);
    expect(r6).toMatch(/strict: .*'"?dnsName"?' does not exist/);
    expect(r7).toBe('no schema for apps/v1/Deploymnt');
  });
});
