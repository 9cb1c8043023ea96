import type { App } from '@platform/http-common';
import { selfSignedCertificate } from '@platform/test-cert';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { httpsFetch, type HttpsResponse } from '../support/https.js';
import { BUSYBOX_DIGEST, fixture, PROXY_DIGEST, WEB_DIGEST, workloadFixtures } from '../support/fixtures.js';

let db: TestDatabase;
let dir: string;
let tls: { certfile: string; keyfile: string };
const servers: App[] = [];

/** An imagelist serving HTTPS on a free port, as Kubernetes would reach it. */
async function serve(admission: { exemptNamespaces?: string[]; audit?: boolean } = {}): Promise<number> {
  const app = await buildApp({ sql: db.sql, logger: false, defaultMetrics: false, tls, admission });
  await app.listen({ host: '127.0.0.1', port: 0 });
  servers.push(app);
  return (app.server.address() as AddressInfo).port;
}

const workloads = await workloadFixtures();

async function allow(id: string, name: string, tags: string[]) {
  await db.sql`INSERT INTO images (id, name, tags) VALUES (${id}, ${name}, ${tags}) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, tags = EXCLUDED.tags`;
}

let port: number;
beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'imagelist-admission-'));
  tls = selfSignedCertificate(dir, { name: 'webhook', cn: 'imagelist.imagelist.svc' });
  port = await serve();
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  await db.sql`TRUNCATE images`;
  // everything the fixtures run: web by name and tag, proxy by digest (stored under another
  // name), busybox as Docker Hub shorthand
  await allow(WEB_DIGEST, 'quay.io/shop/web', ['v1.4.2', 'latest']);
  await allow(PROXY_DIGEST, 'ghcr.io/shop/proxy-renamed', []);
  await allow(BUSYBOX_DIGEST, 'busybox', ['1.36']);
});

const validate = (p: number, body: unknown) => httpsFetch(p, { method: 'POST', path: '/admission/validate', body });

describe('ValidatingAdmissionWebhook over HTTPS', () => {
  it('has a fixture for every workload kind and the ephemeral containers subresource', () => {
    expect(workloads.sort()).toEqual([
      'cronjob',
      'daemonset',
      'deployment',
      'job',
      'pod',
      'pod-ephemeralcontainers',
      'replicaset',
      'statefulset',
    ]);
  });

  it.each(workloads)('allows a %s whose images are all allowlisted, echoing the uid', async (name) => {
    const review = await fixture(name);
    const res = await validate(port, review);
    expect(res.status).toBe(200);
    expect(res.cn).toBe('imagelist.imagelist.svc');
    expect(res.json()).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: review.request.uid, allowed: true },
    });
  });

  it.each(workloads)('denies a %s running an image that is not allowlisted, naming it', async (name) => {
    await db.sql`DELETE FROM images WHERE id = ${BUSYBOX_DIGEST}`;
    const review = await fixture(name);
    const res = await validate(port, review);
    expect(res.status).toBe(200);
    const { response } = res.json();
    expect(response.uid).toBe(review.request.uid);
    expect(response.allowed).toBe(false);
    expect(response.status.code).toBe(403);
    // with a reason kubectl prints `Error from server (Forbidden):`, without one only `Error from server:`
    expect(response.status.reason).toBe('Forbidden');
    expect(response.status.message).toContain('busybox:1.36');
    expect(response.status.message).toContain('docker.io/library/busybox:1.36');
    expect(response.status.message).not.toContain('quay.io/shop/web');
  });

  it('names every image that failed', async () => {
    await db.sql`TRUNCATE images`;
    const { response } = (await validate(port, await fixture('deployment'))).json();
    expect(response.allowed).toBe(false);
    for (const image of ['busybox:1.36', 'quay.io/shop/web:v1.4.2', `ghcr.io/shop/proxy@sha256:${PROXY_DIGEST}`]) {
      expect(response.status.message).toContain(image);
    }
  });

  it('checks the ephemeral debug container of the pods/ephemeralcontainers subresource', async () => {
    const review = await fixture('pod-ephemeralcontainers');
    review.request.object.spec.ephemeralContainers[0].image = 'docker.io/nicolaka/netshoot:latest';
    const { response } = (await validate(port, review)).json();
    expect(response.allowed).toBe(false);
    expect(response.status.message).toContain('ephemeralContainers[0] (debugger-8xk2p)');
  });

  it('matches by name and tag, not by name alone', async () => {
    const review = await fixture('pod');
    review.request.object.spec.containers[0].image = 'quay.io/shop/web:v1.4.3';
    expect((await validate(port, review)).json().response.allowed).toBe(false);
    review.request.object.spec.containers[0].image = 'quay.io/shop/web';
    expect((await validate(port, review)).json().response.allowed).toBe(true); // :latest is allowlisted
  });

  it('lets a pinned digest win over the tag', async () => {
    const review = await fixture('pod');
    review.request.object.spec.containers[0].image = `quay.io/shop/web:not-a-listed-tag@sha256:${WEB_DIGEST}`;
    expect((await validate(port, review)).json().response.allowed).toBe(true);
    review.request.object.spec.containers[0].image = `quay.io/shop/web:v1.4.2@sha256:${'0'.repeat(64)}`;
    expect((await validate(port, review)).json().response.allowed).toBe(false);
  });

  it('denies references that do not parse', async () => {
    const review = await fixture('pod');
    review.request.object.spec.containers[0].image = 'Quay.io/Shop/WEB:v1';
    const { response } = (await validate(port, review)).json();
    expect(response.allowed).toBe(false);
    expect(response.status.message).toContain('not a valid image reference');
  });

  it('fails closed for kinds it cannot read images from', async () => {
    const review = await fixture('pod');
    // toString and constructor are names every JavaScript object answers to: still unknown kinds
    for (const kind of ['Service', 'toString', 'constructor', '__proto__']) {
      review.request.kind = { group: '', version: 'v1', kind };
      const answer = await validate(port, review);
      expect(answer.status, kind).toBe(200);
      expect(answer.json().response.allowed).toBe(false);
      expect(answer.json().response.status.message).toContain(`cannot check images of kind ${kind};`);
    }
  });

  it('fails closed for a known kind name of another API group', async () => {
    const review = await fixture('deployment');
    review.request.kind = { group: 'evil.example.com', version: 'v1', kind: 'Deployment' };
    const { response } = (await validate(port, review)).json();
    expect(response.allowed).toBe(false);
    expect(response.status.message).toContain('cannot check images of kind Deployment.evil.example.com;');
  });

  it('allows DELETE, which runs nothing', async () => {
    await db.sql`TRUNCATE images`;
    const review = await fixture('deployment');
    review.request.operation = 'DELETE';
    review.request.oldObject = review.request.object;
    review.request.object = null;
    expect((await validate(port, review)).json().response.allowed).toBe(true);
  });

  it('admits exempt namespaces unchecked, and in audit mode admits with warnings', async () => {
    await db.sql`TRUNCATE images`;
    const exempt = await serve({ exemptNamespaces: ['shop'] });
    expect((await validate(exempt, await fixture('pod'))).json().response).toMatchObject({ allowed: true });
    expect(
      (await validate(exempt, { ...(await fixture('pod')), request: { ...(await fixture('pod')).request, namespace: 'other' } })).json()
        .response.allowed,
    ).toBe(false);

    const audit = await serve({ audit: true });
    const { response } = (await validate(audit, await fixture('pod'))).json();
    expect(response.allowed).toBe(true);
    expect(response.status).toBeUndefined();
    expect(response.warnings.length).toBeGreaterThan(1); // one per image
    expect(response.warnings.join('\n')).toMatch(/would deny.*quay\.io\/shop\/web:v1\.4\.2/);

    // The API server may cut a warning over 256 characters and drops all past 4,096 in total.
    // imagelist keeps to half that total, whichever image is the last to fit.
    const shapes = [[40, 300], ...[9, 10].flatMap((count) => Array.from({ length: 31 }, (_, i) => [count, 2 * i]))];
    for (const [count, length] of shapes as [number, number][]) {
      const many = await fixture('pod');
      delete many.request.object.spec.initContainers;
      many.request.object.spec.containers = Array.from({ length: count }, (_, i) => ({
        name: `c${i}`,
        image: `registry.example.com/team-${i}/a-service-with-a-rather-long-name-${'n'.repeat(length)}:v1.2.${i}`,
      }));
      const { warnings } = (await validate(audit, many)).json().response;
      for (const warning of warnings) expect(warning.length).toBeLessThanOrEqual(256);
      expect(warnings.join('').length).toBeLessThanOrEqual(2048);
      expect(warnings[0]).toContain('registry.example.com/team-0/');
      const more = /^audit mode, would deny (\d+) more images/.exec(warnings.at(-1));
      expect(warnings.length - (more ? 1 : 0) + Number(more?.[1] ?? 0)).toBe(count);
    }
  });

  it('admits a review it cannot check (too many images, an unknown kind) in an exempt namespace, and in audit mode with a warning', async () => {
    const tooMany = await fixture('pod');
    delete tooMany.request.object.spec.initContainers;
    tooMany.request.object.spec.containers = Array.from({ length: 1001 }, (_, i) => ({ name: `c${i}`, image: 'evil.example.com/miner:1' }));
    const unknownKind = await fixture('pod');
    unknownKind.request.kind = { group: 'example.com', version: 'v1', kind: 'Widget' };
    const imageReviewOfMany = await fixture('imagereview');
    imageReviewOfMany.spec.namespace = 'shop';
    imageReviewOfMany.spec.containers = Array.from({ length: 1001 }, () => ({ image: 'evil.example.com/miner:1' }));
    const imageReviewOf = (p: number) => httpsFetch(p, { method: 'POST', path: '/admission/imagereview', body: imageReviewOfMany });

    for (const review of [tooMany, unknownKind]) expect((await validate(port, review)).json().response.allowed).toBe(false);
    expect((await imageReviewOf(port)).json().status.allowed).toBe(false);

    const exempt = await serve({ exemptNamespaces: ['shop'] });
    for (const review of [tooMany, unknownKind])
      expect((await validate(exempt, review)).json().response).toEqual({ uid: review.request.uid, allowed: true });
    expect((await imageReviewOf(exempt)).json().status).toEqual({ allowed: true });

    const audit = await serve({ audit: true });
    const tooManyAnswer = (await validate(audit, tooMany)).json().response;
    expect(tooManyAnswer.allowed).toBe(true);
    expect(tooManyAnswer.warnings).toEqual([
      'audit mode, would deny: request.object has more than 1000 images; imagelist checks at most 1000 per object',
    ]);
    const unknownAnswer = (await validate(audit, unknownKind)).json().response;
    expect(unknownAnswer.allowed).toBe(true);
    expect(unknownAnswer.warnings[0]).toMatch(/^audit mode, would deny: imagelist cannot check images of kind Widget\.example\.com;/);
    const { status } = (await imageReviewOf(audit)).json();
    expect(status.allowed).toBe(true);
    expect(status.auditAnnotations['would-deny']).toBe(
      'spec.containers has more than 1000 images; imagelist checks at most 1000 per object',
    );
  });

  it.each([
    // The API server takes this answer to a v1beta1 review (it checks no apiVersion there), so the
    // message is what an operator whose webhook lists v1beta1 first sees on every Pod: it names v1.
    ['another apiVersion', (r: any) => (r.apiVersion = 'admission.k8s.io/v1beta1'), 'body.apiVersion must be "admission.k8s.io/v1"'],
    ['an object that is a list', (r: any) => (r.request.object = [1]), 'body.request.object'],
    [
      'containers that are not a list',
      (r: any) => (r.request.object.spec.template.spec.containers = 'nginx'),
      'request.object.spec.template.spec.containers',
    ],
    [
      'a container image that is not a string',
      (r: any) => (r.request.object.spec.template.spec.initContainers[0].image = 7),
      'request.object.spec.template.spec.initContainers[0].image',
    ],
    ['a Deployment without a pod template', (r: any) => delete r.request.object.spec.template, 'request.object.spec.template.spec'],
    // each of these was answered `allowed: true` before
    ['a lowercase operation', (r: any) => (r.request.operation = 'create'), 'body.request.operation'],
    ['an HTTP verb as operation', (r: any) => (r.request.operation = 'PATCH'), 'body.request.operation'],
    ['an empty operation', (r: any) => (r.request.operation = ''), 'body.request.operation'],
    ['no operation', (r: any) => delete r.request.operation, 'body.request.operation'],
    ['no kind', (r: any) => delete r.request.kind, 'body.request.kind'],
    ['a CREATE without an object', (r: any) => delete r.request.object, 'request.object'],
    ['a CREATE whose object is null', (r: any) => (r.request.object = null), 'request.object'],
    [
      'a pod template without containers',
      (r: any) => delete r.request.object.spec.template.spec.containers,
      'request.object.spec.template.spec.containers',
    ],
    [
      'a pod template with an empty container list',
      (r: any) => (r.request.object.spec.template.spec.containers = []),
      'request.object.spec.template.spec.containers',
    ],
  ])('denies a review with %s, naming the field: a 4xx would be admitted by failurePolicy Ignore', async (_what, mutate, field) => {
    const review = await fixture('deployment');
    mutate(review);
    const res = await validate(port, review);
    expect(res.status).toBe(200);
    const { response } = res.json();
    expect(response).toMatchObject({ uid: review.request.uid, allowed: false, status: { code: 403, reason: 'Forbidden' } });
    expect(response.status.message).toMatch(/^not an AdmissionReview imagelist can read: /);
    expect(response.status.message).toContain(field);
  });

  it.each([
    ['no request', (r: any) => delete r.request, 'body.request'],
    ['no uid', (r: any) => delete r.request.uid, 'body.request.uid'],
    ['an empty uid', (r: any) => (r.request.uid = ''), 'body.request.uid'],
    ['a uid that is not a string', (r: any) => (r.request.uid = 7), 'body.request.uid'],
    ['a uid longer than any Kubernetes uid', (r: any) => (r.request.uid = 'u'.repeat(129)), 'body.request.uid'],
  ])(
    'answers a review with %s with 400 naming the field: no answer without the uid is one the API server takes',
    async (_what, mutate, field) => {
      const review = await fixture('deployment');
      mutate(review);
      const res = await validate(port, review);
      expect(res.status).toBe(400);
      expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    },
  );

  it('answers a body that is not JSON, or nested past the bound, with 400 naming the body', async () => {
    const notJson = await validate(port, '{"kind":');
    expect([notJson.status, notJson.json().errors]).toEqual([400, [{ field: 'body', message: 'is not valid JSON' }]]);
    const deep = await validate(port, `{"kind":${'['.repeat(20_000)}${']'.repeat(20_000)}}`);
    expect([deep.status, deep.json().errors]).toEqual([400, [{ field: 'body', message: expect.stringMatching(/nest/) }]]);
  });

  it('denies a malformed review in an exempt namespace and in audit mode too', async () => {
    const review = await fixture('pod');
    review.request.operation = 'PATCH';
    for (const p of [await serve({ exemptNamespaces: [review.request.namespace] }), await serve({ audit: true })]) {
      const res = await validate(p, review);
      expect(res.status).toBe(200);
      expect(res.json().response).toMatchObject({ uid: review.request.uid, allowed: false });
    }
  });

  it('checks the images of image volumes, as the kubelet mounts them', async () => {
    const review = await fixture('deployment');
    const spec = review.request.object.spec.template.spec;
    spec.volumes = [
      { name: 'config', configMap: { name: 'web' } },
      { name: 'models', image: { reference: 'quay.io/shop/models:v3' } },
    ];
    let { response } = (await validate(port, review)).json();
    expect(response.allowed).toBe(false);
    expect(response.status.message).toContain('quay.io/shop/models:v3 (volumes[1] (models))');
    spec.volumes[1].image.reference = 'quay.io/shop/web:v1.4.2';
    ({ response } = (await validate(port, review)).json());
    expect(response.allowed).toBe(true);

    // An UPDATE that mounts a new image is checked for it, as a new container image is.
    const update = await fixture('deployment');
    update.request.operation = 'UPDATE';
    update.request.oldObject = structuredClone(update.request.object);
    update.request.object.spec.template.spec.volumes = [{ name: 'models', image: { reference: 'quay.io/shop/models:v3' } }];
    expect((await validate(port, update)).json().response.allowed).toBe(false);
  });

  it('reads an image volume without a reference in a pod template as no image, as Kubernetes accepted it until #135989', async () => {
    // The API server leaves the empty field out; kubernetes/kubernetes#135988.
    const noReference = () => [{ name: 'models', image: { pullPolicy: 'IfNotPresent' } }];
    const create = await fixture('deployment');
    create.request.object.spec.template.spec.volumes = noReference();
    expect((await validate(port, create)).json().response.allowed).toBe(true);

    // It can be fixed by an UPDATE, which is checked for the image it then mounts.
    const update = await fixture('deployment');
    update.request.operation = 'UPDATE';
    update.request.object.spec.template.spec.volumes = noReference();
    update.request.oldObject = structuredClone(update.request.object);
    update.request.object.spec.template.spec.volumes[0].image.reference = 'quay.io/shop/models:v3';
    expect((await validate(port, update)).json().response.allowed).toBe(false);
    update.request.object.spec.template.spec.volumes[0].image.reference = 'quay.io/shop/web:v1.4.2';
    expect((await validate(port, update)).json().response.allowed).toBe(true);

    // The garbage collector's removal of foregroundDeletion from it is admitted.
    const deleting = await fixture('deployment');
    deleting.request.operation = 'UPDATE';
    deleting.request.object.spec.template.spec.volumes = noReference();
    deleting.request.object.metadata.deletionTimestamp = '2026-12-07T20:00:00Z';
    deleting.request.oldObject = structuredClone(deleting.request.object);
    deleting.request.oldObject.metadata.finalizers = ['foregroundDeletion'];
    expect((await validate(port, deleting)).json().response.allowed).toBe(true);

    // A Pod needs the reference (the API server refuses one without it): never read as no image.
    const pod = await fixture('pod');
    pod.request.object.spec.volumes = noReference();
    const { response } = (await validate(port, pod)).json();
    expect(response.allowed).toBe(false);
    expect(response.status.message).toContain('request.object.spec.volumes[0].image.reference must be a string');
  });

  it('checks an EphemeralContainers object (pods/ephemeralcontainers before Kubernetes 1.22), and never allows one that names none', async () => {
    const review = await fixture('pod-ephemeralcontainers');
    const debug = { name: 'debugger', image: 'docker.io/nicolaka/netshoot:latest' };
    review.request.kind = { group: '', version: 'v1', kind: 'EphemeralContainers' };
    review.request.oldObject = { metadata: review.request.object.metadata, ephemeralContainers: null };
    review.request.object = { metadata: review.request.object.metadata, ephemeralContainers: [debug] };
    const denied = (await validate(port, review)).json().response;
    expect(denied.allowed).toBe(false);
    expect(denied.status.message).toContain('netshoot:latest (ephemeralContainers[0] (debugger))');
    debug.image = 'busybox:1.36';
    expect((await validate(port, review)).json().response.allowed).toBe(true);

    const pod = (await fixture('pod')).request.object;
    for (const object of [{}, { ephemeralContainers: null }, { ephemeralContainers: [] }, pod]) {
      const { response } = (await validate(port, { ...review, request: { ...review.request, object } })).json();
      expect(response.allowed, JSON.stringify(object).slice(0, 40)).toBe(false);
      expect(response.status.message).toMatch(/^not an AdmissionReview imagelist can read: request\.object\.ephemeralContainers /);
    }
  });

  it('denies an object with more images than it checks, without reading them', async () => {
    const review = await fixture('pod');
    const many = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `c${i}`, image: `quay.io/shop/web:v1.4.2` }));
    delete review.request.object.spec.initContainers;
    review.request.object.spec.containers = many(1000);
    expect((await validate(port, review)).json().response.allowed).toBe(true);
    review.request.object.spec.containers = many(1001);
    const { response } = (await validate(port, review)).json();
    expect(response).toMatchObject({ allowed: false, status: { code: 403, reason: 'Forbidden' } });
    expect(response.status.message).toBe('request.object has more than 1000 images; imagelist checks at most 1000 per object');
    // An image volume counts as an image too.
    review.request.object.spec.containers = many(1000);
    review.request.object.spec.volumes = [{ name: 'models', image: { reference: 'quay.io/shop/web:v1.4.2' } }];
    expect((await validate(port, review)).json().response.allowed).toBe(false);
  });

  it('denies an image string longer than any reference, however long', async () => {
    const review = await fixture('pod');
    review.request.object.spec.containers[0].image = `quay.io/shop/web:v1.4.2${'a'.repeat(1_000_000)}`;
    const { response } = (await validate(port, review)).json();
    expect(response.allowed).toBe(false);
    expect(response.status.message).toContain('quay.io/shop/web:v1.4.2aaa');
    expect(response.status.message).toContain('(1000023 characters) (containers[0] (app)): not a valid image reference');
    expect(response.status.message.length).toBeLessThan(300);
  });

  it('names as many denied images as fit in 2,048 characters, then how many more', async () => {
    for (const [count, length] of [
      [3, 10],
      [1000, 200],
      [12, 150],
    ] as const) {
      const review = await fixture('pod');
      delete review.request.object.spec.initContainers;
      review.request.object.spec.containers = Array.from({ length: count }, (_, i) => ({
        name: `c${i}`,
        image: `registry.example.com/team-${i}/${'n'.repeat(length)}:v${i}`,
      }));
      const { response } = (await validate(port, review)).json();
      expect(response.allowed).toBe(false);
      const message: string = response.status.message;
      expect(message.length).toBeLessThanOrEqual(2048);
      expect(message).toMatch(/^images not on the allowlist: registry\.example\.com\/team-0\//);
      const named = message.match(/\(containers\[\d+\] \(c\d+\)\)/g)!.length;
      const more = /; and (\d+) more \(the log names them\)$/.exec(message);
      expect(named + Number(more?.[1] ?? 0)).toBe(count);
      if (count === 3) expect(more).toBeNull();
      else expect(named).toBeGreaterThanOrEqual(4);
    }
  });
});

describe('ImagePolicyWebhook over HTTPS', () => {
  const imageReview = (p: number, body: unknown) => httpsFetch(p, { method: 'POST', path: '/admission/imagereview', body });

  // JSON.parse took 5.9 s over 8 MB of `[[[[`, and a few 8 MB `[{},{},…]` exhausted the heap.
  it.each([
    ['nests deeply', '{"spec":' + '['.repeat(4_000_000) + ']'.repeat(4_000_000) + '}', 'nests deeper than 128 levels'],
    ['holds millions of values', '{"spec":[' + Array(2_500_000).fill('{}').join(',') + ']}', 'holds more than 250000 values'],
  ])('denies a body that %s at once, unparsed, and /admission/validate refuses it', async (_what, body, problem) => {
    const started = Date.now();
    const res = await imageReview(port, body);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(res.json().status).toEqual({ allowed: false, reason: `not an ImageReview imagelist can read: The request body ${problem}.` });
    const refused = await httpsFetch(port, { method: 'POST', path: '/admission/validate', body });
    expect(refused.status).toBe(400);
    expect(refused.json().detail).toBe(`The request body ${problem}.`);
  });

  it('allows allowlisted images', async () => {
    const res = await imageReview(port, await fixture('imagereview'));
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', status: { allowed: true } });
  });

  it('denies with a reason naming every image that failed', async () => {
    const review = await fixture('imagereview');
    review.spec.containers.push({ image: 'evil.example.com/miner:1' });
    await db.sql`DELETE FROM images WHERE id = ${BUSYBOX_DIGEST}`;
    const { status } = (await imageReview(port, review)).json();
    expect(status.allowed).toBe(false);
    expect(status.reason).toContain('evil.example.com/miner:1');
    expect(status.reason).toContain('busybox:1.36');
    expect(status.reason).not.toContain('quay.io/shop/web');
    // the review lists containers and initContainers as one list: no pod field can be named
    expect(status.reason).not.toMatch(/containers\[/i);
  });

  // A 400 is a backend failure, which the plugin's `defaultAllow: true` turns into an admission.
  it('denies a review of more images than it checks, or of an image longer than any reference: never a 400', async () => {
    const review = await fixture('imagereview');
    review.spec.containers = Array.from({ length: 1000 }, () => ({ image: 'quay.io/shop/web:v1.4.2' }));
    expect((await imageReview(port, review)).json().status).toEqual({ allowed: true });
    review.spec.containers.push({ image: 'evil.example.com/miner:1' });
    const many = await imageReview(port, review);
    expect(many.status).toBe(200);
    expect(many.json().status).toEqual({
      allowed: false,
      reason: 'spec.containers has more than 1000 images; imagelist checks at most 1000 per object',
    });

    review.spec.containers = [{ image: `quay.io/shop/web:v1.4.2${'a'.repeat(100_000)}` }];
    const long = await imageReview(port, review);
    expect(long.status).toBe(200);
    expect(long.json().status.allowed).toBe(false);
    expect(long.json().status.reason).toContain('(100023 characters): not a valid image reference');
    expect(long.json().status.reason.length).toBeLessThan(300);
  });

  it('counts its answers by webhook and decision for /metrics', async () => {
    const counts = async (p: number) => {
      const text = (await httpsFetch(p, { method: 'GET', path: '/metrics' })).body;
      return Object.fromEntries(
        [...text.matchAll(/^imagelist_admission_decisions_total\{webhook="(\w+)",decision="(\w+)"\} (\d+)$/gm)].map((m) => [
          `${m[1]} ${m[2]}`,
          Number(m[3]),
        ]),
      );
    };
    const fresh = await serve();
    const audit = await serve({ audit: true });
    await imageReview(fresh, await fixture('imagereview'));
    await validate(fresh, await fixture('pod'));
    await db.sql`TRUNCATE images`;
    await imageReview(fresh, await fixture('imagereview'));
    await imageReview(audit, await fixture('imagereview'));
    expect(await counts(fresh)).toEqual({ 'imagereview allowed': 1, 'imagereview denied': 1, 'validate allowed': 1 });
    expect(await counts(audit)).toEqual({ 'imagereview would_deny': 1 });
  });

  it('in audit mode allows and annotates what it would have denied', async () => {
    await db.sql`TRUNCATE images`;
    const audit = await serve({ audit: true });
    const { status } = (await imageReview(audit, await fixture('imagereview'))).json();
    expect(status.allowed).toBe(true);
    // the plugin prefixes `imagepolicywebhook.image-policy.k8s.io/` itself and rejects a key with a `/`
    for (const key of Object.keys(status.auditAnnotations)) expect(key).toMatch(/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/);
    expect(status.auditAnnotations['would-deny']).toContain('busybox:1.36');
  });

  // The plugin takes any answer but a 200 for a failure of the backend, which `defaultAllow: true`
  // admits: a request that is not a review is answered 200, denied, naming what is wrong.
  const notAReview = (res: HttpsResponse, says: string) => {
    expect(res.status).toBe(200);
    const { status } = res.json();
    expect(status.allowed).toBe(false);
    expect(status.reason).toMatch(/^not an ImageReview imagelist can read: /);
    expect(status.reason).toContain(says);
  };

  it('denies a malformed review, naming the field, with a 200', async () => {
    const res = await imageReview(port, {
      apiVersion: 'imagepolicy.k8s.io/v1alpha1',
      kind: 'ImageReview',
      spec: { containers: [{ image: 'evil.example.com/miner:1' }, { name: 'x' }] },
    });
    notAReview(res, 'body.spec.containers.1.image is required');
  });

  // A Pod always has a container; the plugin omits an empty list (omitempty), so both are malformed.
  it.each([
    ['an empty container list', { containers: [] }],
    ['no container list', {}],
  ])('denies a review with %s with a 200', async (_what, spec) => {
    const res = await imageReview(port, { apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', spec });
    notAReview(res, 'body.spec.containers');
  });

  it('denies a body that is not JSON, or larger than 8 MiB, with a 200', async () => {
    notAReview(await imageReview(port, '{"apiVersion": "imagepolicy.k8s.io/v1alpha1", "spec": {'), 'not valid JSON');
    const huge = JSON.stringify({ ...(await fixture('imagereview')), pad: 'x'.repeat(8 * 1024 * 1024) });
    notAReview(await imageReview(port, huge), 'larger than this service accepts');
  });

  it('refuses a review holding a key that names a prototype, saying where, on both webhooks', async () => {
    const review = await fixture('imagereview');
    const poisoned = JSON.stringify(review).replace('"spec":{', '"spec":{"__proto__":{"allowed":true},');
    notAReview(await imageReview(port, poisoned), 'body.spec.__proto__ is a key this service refuses');
    const admission = await fixture('pod');
    // Its uid can be read: answered 200 denied, as a 400 would be admitted under failurePolicy Ignore.
    for (const [poison, field] of [
      ['"request":{"constructor":{"prototype":{"allowed":true}},', 'body.request.constructor.prototype'],
      ['"request":{"__proto__":{"uid":"forged"},', 'body.request.__proto__'],
      ['"request":{"extra":{"\\u005f_proto__":{}},', 'body.request.extra.__proto__'],
    ]) {
      const res = await validate(port, JSON.stringify(admission).replace('"request":{', poison!));
      expect(res.status).toBe(200);
      expect(res.json().response).toEqual({
        uid: admission.request.uid,
        allowed: false,
        status: { code: 403, reason: 'Forbidden', message: expect.stringContaining(`${field} is a key this service refuses`) },
      });
    }
    // Without a uid there is no answer the API server would take: a 400 (failurePolicy Fail denies).
    const { uid: _uid, ...withoutUid } = admission.request;
    const res = await validate(
      port,
      JSON.stringify({ ...admission, request: withoutUid }).replace('"request":{', '"request":{"__proto__":{},'),
    );
    expect(res.status).toBe(400);
    expect(res.json().errors).toEqual([{ field: 'body.request.__proto__', message: expect.stringMatching(/prototype/) }]);
  });
});
