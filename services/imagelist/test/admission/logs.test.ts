import type { App } from '@platform/http-common';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { collectLogLines } from '../support/log-lines.js';
import { freePort, startServer } from '../support/server-process.js';
import { fixture } from '../support/fixtures.js';

/** The log lines an operator reads about admission, from a real pino logger. */

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase(); // empty allowlist: every image is denied
});
afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await db?.close();
});

const apps: App[] = [];
/** An app listening on a free port whose log lines are collected. */
async function serve(audit: boolean): Promise<{ base: string; lines: () => any[] }> {
  const { stream, lines } = collectLogLines();
  const app = await buildApp({ sql: db.sql, logger: { level: 'info', stream }, defaultMetrics: false, admission: { audit } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  apps.push(app);
  return {
    base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    lines,
  };
}

const post = (base: string, route: string, body: unknown) =>
  fetch(`${base}/admission/${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('admission logs', () => {
  it('a denial names the object, its namespace and the requesting user', async () => {
    const { base, lines } = await serve(false);
    const res = await post(base, 'validate', await fixture('replicaset'));
    expect(((await res.json()) as { response: { allowed: boolean } }).response.allowed).toBe(false);
    const line = lines().find((l) => l.msg === 'admission denied');
    expect(line).toMatchObject({
      level: 30,
      kind: 'ReplicaSet',
      namespace: 'shop',
      name: 'web-7d4b9c6f5',
      user: 'system:serviceaccount:kube-system:deployment-controller',
      operation: 'CREATE',
    });
    expect(line.denied.join(' ')).toContain('busybox:1.36');
    expect(lines().some((l) => /would deny/.test(l.msg))).toBe(false);

    await post(base, 'imagereview', await fixture('imagereview'));
    expect(lines().find((l) => l.msg === 'image review denied')).toMatchObject({ namespace: 'shop' });
  });

  it('a Pod created from generateName is named by its prefix', async () => {
    const { base, lines } = await serve(false);
    const review = await fixture('pod');
    review.request.name = '';
    delete review.request.object.metadata.name;
    review.request.object.metadata.generateName = 'web-7d4b9c6f5-';
    await post(base, 'validate', review);
    expect(lines().find((l) => l.msg === 'admission denied')).toMatchObject({ name: 'web-7d4b9c6f5-' });
  });

  // Reviews need no login: a caller must not be able to write megabytes into the log per request.
  it('cuts what a review says of itself to a bounded length in the log', async () => {
    const { base, lines } = await serve(false);
    const long = 'x'.repeat(100_000);
    const review = await fixture('pod');
    review.request.userInfo.username = long;
    review.request.name = long;
    review.request.namespace = long;
    review.request.object.spec.containers[0].name = long;
    await post(base, 'validate', review);
    const line = lines().find((l) => l.msg === 'admission denied');
    for (const key of ['user', 'name', 'namespace']) {
      expect(line[key]).toMatch(/^x+\.\.\. \(100000 characters\)$/);
      expect(line[key].length).toBeLessThanOrEqual(253);
    }
    expect(JSON.stringify(line).length).toBeLessThan(2000);

    review.request.kind.kind = long;
    const res = (await (await post(base, 'validate', review)).json()) as { response: { allowed: boolean; status: { message: string } } };
    expect(res.response.allowed).toBe(false);
    expect(res.response.status.message.length).toBeLessThan(500);
  });

  it('audit mode says "would deny", not "denied"', async () => {
    const { base, lines } = await serve(true);
    expect(
      ((await (await post(base, 'validate', await fixture('pod'))).json()) as { response: { allowed: boolean } }).response.allowed,
    ).toBe(true);
    expect(
      ((await (await post(base, 'imagereview', await fixture('imagereview'))).json()) as { status: { allowed: boolean } }).status.allowed,
    ).toBe(true);
    const messages = lines().map((l) => l.msg);
    expect(messages).toContain('admission would deny');
    expect(messages).toContain('image review would deny');
    expect(messages.filter((m) => /denied/.test(m))).toEqual([]);
    expect(lines().find((l) => l.msg === 'admission would deny')).toMatchObject({
      kind: 'Pod',
      name: 'web-7d4b9c6f5-x2kq9',
      user: 'system:serviceaccount:argocd:argocd-application-controller',
    });
  });
});

// The process opens connections of its own: embedded PGlite takes one client only.
describe.skipIf(!process.env.DATABASE_URL)('imagelist start-up log (needs a PostgreSQL server: DATABASE_URL)', () => {
  it('states the admission mode and the exempt namespaces', async () => {
    const port = await freePort();
    const server = await startServer(
      ['--listen', `127.0.0.1:${port}`, '--admission-audit', '--admission-exempt-namespaces', 'kube-system, monitoring'],
      {
        DATABASE_URL: db.url,
        IMAGELIST_LOG_LEVEL: 'info',
      },
    );
    try {
      const line = server
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l))
        .find((l) => l.admission);
      expect(line).toMatchObject({ level: 30, admission: { mode: 'audit', exemptNamespaces: ['kube-system', 'monitoring'] } });
    } finally {
      await server.stop();
    }
    const enforcing = await startServer(['--listen', `127.0.0.1:${port}`], { DATABASE_URL: db.url, IMAGELIST_LOG_LEVEL: 'info' });
    try {
      const line = enforcing
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l))
        .find((l) => l.admission);
      expect(line).toMatchObject({ admission: { mode: 'enforce', exemptNamespaces: [] } });
    } finally {
      await enforcing.stop();
    }
  }, 60_000);
});
