import type { App } from '@platform/http-common';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { fixture, PROXY_DIGEST, WEB_DIGEST } from '../support/fixtures.js';

/**
 * UPDATEs as a real API server sends them: `object` and `oldObject` of the same kind, made from
 * the CREATE fixtures the way Kubernetes and its controllers change them.
 */
const BUSYBOX_DIGEST = 'f569d31fa5e46509fe0235f5bc1344fc96c8c142455056c3e02c43dea70f05eb';
const DELETED_AT = '2026-12-04T03:58:11Z';

let db: TestDatabase;
let app: App;
let base: string;

beforeAll(async () => {
  db = await createTestDatabase();
  app = await buildApp({ sql: db.sql, logger: false, defaultMetrics: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await app?.close();
  await db?.close();
});
beforeEach(async () => {
  await db.sql`TRUNCATE images`;
  await db.sql`INSERT INTO images (id, name, tags) VALUES (${WEB_DIGEST}, 'quay.io/shop/web', ${['v1.4.2']}), (${PROXY_DIGEST}, 'ghcr.io/shop/proxy', ${[]})`;
  // busybox:1.36, which every fixture runs, has been delisted since those objects were created
});

const clone = <T>(v: T): T => structuredClone(v);

/** An UPDATE of the fixture's object: `change` edits the new object; the old one is the fixture's. */
async function update(name: string, change: (object: any, review: any) => void = () => {}): Promise<any> {
  const review = await fixture(name);
  review.request.operation = 'UPDATE';
  review.request.options = { kind: 'UpdateOptions', apiVersion: 'meta.k8s.io/v1' };
  review.request.oldObject = clone(review.request.object);
  change(review.request.object, review);
  return review;
}

async function validate(review: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/admission/validate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(review),
  });
  return { status: res.status, body: await res.json() };
}

async function answer(
  review: unknown,
): Promise<{ uid: string; allowed: boolean; status?: { code: number; reason?: string; message: string } }> {
  const { status, body } = await validate(review);
  expect(status).toBe(200);
  return body.response;
}

const deleting = (object: any) => {
  object.metadata.deletionTimestamp = DELETED_AT;
  object.metadata.deletionGracePeriodSeconds = 30;
};

describe('UPDATE: only what the update introduces is checked', () => {
  it('admits removing the last finalizer from a terminating Pod whose image was delisted', async () => {
    const review = await update('pod', (pod, r) => {
      deleting(r.request.oldObject);
      r.request.oldObject.metadata.finalizers = ['batch.kubernetes.io/job-tracking'];
      deleting(pod);
    });
    const res = await answer(review);
    expect(res).toEqual({ uid: review.request.uid, allowed: true });
  });

  it('admits the garbage collector removing foregroundDeletion from a Deployment being deleted', async () => {
    const review = await update('deployment', (deployment, r) => {
      r.request.userInfo = { username: 'system:serviceaccount:kube-system:generic-garbage-collector', groups: ['system:serviceaccounts'] };
      for (const o of [deployment, r.request.oldObject]) deleting(o);
      r.request.oldObject.metadata.finalizers = ['foregroundDeletion'];
    });
    expect((await answer(review)).allowed).toBe(true);
  });

  it('admits the Deployment controller scaling the old ReplicaSet of a rollout down', async () => {
    const review = await update('replicaset', (rs) => {
      rs.spec.replicas = 2;
      rs.metadata.annotations['deployment.kubernetes.io/desired-replicas'] = '3';
    });
    expect((await answer(review)).allowed).toBe(true);
  });

  it('admits a label edit on a running Pod', async () => {
    const review = await update('pod', (pod) => (pod.metadata.labels.team = 'payments'));
    expect((await answer(review)).allowed).toBe(true);
  });

  it('treats an image written another way as the same image (by normalised reference)', async () => {
    for (const spelling of ['docker.io/library/busybox:1.36', 'index.docker.io/busybox:1.36', 'library/busybox:1.36']) {
      const review = await update('deployment', (d) => (d.spec.template.spec.initContainers[0].image = spelling));
      expect((await answer(review)).allowed, spelling).toBe(true);
    }
    // a pinned digest is the image, whatever tag is written next to it
    const pinned = await update('pod', (pod, r) => {
      r.request.oldObject.spec.initContainers[0].image = `busybox@sha256:${BUSYBOX_DIGEST}`;
      pod.spec.initContainers[0].image = `docker.io/library/busybox:1.36@sha256:${BUSYBOX_DIGEST}`;
    });
    expect((await answer(pinned)).allowed).toBe(true);
  });

  it('still denies `kubectl set image` to an image that is not allowlisted, naming only that image', async () => {
    const review = await update('deployment', (d) => (d.spec.template.spec.containers[0].image = 'quay.io/shop/web:v9-unlisted'));
    const res = await answer(review);
    expect(res.allowed).toBe(false);
    expect(res.status).toMatchObject({ code: 403, reason: 'Forbidden' });
    expect(res.status!.message).toContain('quay.io/shop/web:v9-unlisted');
    expect(res.status!.message).not.toContain('busybox');
  });

  it('checks another tag of an image the object runs, and a digest in place of a tag', async () => {
    const tag = await update('pod', (pod) => (pod.spec.initContainers[0].image = 'busybox:1.37'));
    expect((await answer(tag)).allowed).toBe(false);
    const digest = await update('pod', (pod) => (pod.spec.initContainers[0].image = `busybox@sha256:${'1'.repeat(64)}`));
    expect((await answer(digest)).allowed).toBe(false);
  });

  it('checks every image of an UPDATE that has no oldObject', async () => {
    for (const oldObject of [null, undefined]) {
      const review = await update('pod', (_pod, r) => (r.request.oldObject = oldObject));
      const res = await answer(review);
      expect(res.allowed, String(oldObject)).toBe(false);
      expect(res.status!.message).toContain('busybox:1.36');
    }
  });

  it('does not take a deletionTimestamp on the new object alone as a deletion', async () => {
    const review = await update('pod', (pod) => {
      deleting(pod);
      pod.spec.containers[0].image = 'evil.example.com/miner:1';
    });
    expect((await answer(review)).allowed).toBe(false);
    const noOld = await update('pod', (pod, r) => {
      deleting(pod);
      r.request.oldObject = null;
    });
    expect((await answer(noOld)).allowed).toBe(false);
  });

  it('checks a new ephemeral container even when the Pod already runs its image', async () => {
    const review = await update('pod-ephemeralcontainers', (_pod, r) => delete r.request.oldObject.spec.ephemeralContainers);
    // the debugger runs docker.io/library/busybox:1.36, as the Pod's init container did: still a new container
    const res = await answer(review);
    expect(res.allowed).toBe(false);
    expect(res.status!.message).toContain('ephemeralContainers[0] (debugger-8xk2p)');

    review.request.object.spec.ephemeralContainers[0].image = 'quay.io/shop/web:v1.4.2';
    expect((await answer(review)).allowed).toBe(true);
  });

  it('admits a second ephemeral container next to one that runs a delisted image', async () => {
    const review = await update('pod-ephemeralcontainers', (pod) => {
      pod.spec.ephemeralContainers.push({ name: 'debugger-2', image: 'quay.io/shop/web:v1.4.2', targetContainerName: 'app' });
    });
    expect((await answer(review)).allowed).toBe(true);
    review.request.object.spec.ephemeralContainers[1].image = 'docker.io/nicolaka/netshoot:latest';
    const res = await answer(review);
    expect(res.allowed).toBe(false);
    expect(res.status!.message).toContain('ephemeralContainers[1] (debugger-2)');
    expect(res.status!.message).not.toContain('debugger-8xk2p');
  });

  it.each([
    ['an oldObject that is a list', (r: any) => (r.request.oldObject = [1]), 'body.request.oldObject'],
    ['an oldObject without a pod template', (r: any) => delete r.request.oldObject.spec.template, 'request.oldObject.spec.template.spec'],
    [
      'an oldObject image that is not a string',
      (r: any) => (r.request.oldObject.spec.template.spec.containers[0].image = 7),
      'request.oldObject.spec.template.spec.containers[0].image',
    ],
  ])('denies an UPDATE with %s, naming the field', async (_what, mutate, field) => {
    const review = await update('deployment');
    mutate(review);
    const { status, body } = await validate(review);
    expect(status).toBe(200);
    expect(body.response).toMatchObject({ uid: review.request.uid, allowed: false });
    expect(body.response.status.message).toContain(field);
  });
});
