import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { BUSYBOX_DIGEST, fixture, PROXY_DIGEST, WEB_DIGEST } from './support/fixtures.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// A burst of the largest admission reviews against the real process with the Deployment's
// NODE_OPTIONS. Read all at once, 30 reviews of 7 MB took it to 646 MB resident, past the
// Deployment's 384 MiB limit (the kubelet would have killed every replica they reached); with
// the memory set aside for request bodies (http-common body-budget.ts), each is answered or
// refused with a 503 its client may retry, and the process stays within the limit.
const DEPLOYED_NODE_OPTIONS = '--max-semi-space-size=16 --max-old-space-size=256';
const MEMORY_LIMIT = 384 * 1024 * 1024;
const REVIEWS = 30;
const ANNOTATION_BYTES = 7 * 1024 * 1024;

/**
 * The Pod fixture, as a kube-apiserver sent it, carrying an annotation of ANNOTATION_BYTES. Encoded
 * once here, as the API server sends bytes it has encoded: sent as strings, the 30 encodings of
 * 7 MB stalled this client, and with the machine's cores busy (CI) 2-4 of its 30 bodies stopped
 * arriving long enough for the server to end them (the minimum rate of http-common's BodyBudget):
 * 3 runs of 3 failed so under two busy loops, none once encoded before.
 */
async function bigReview(i: number): Promise<Buffer> {
  const review = await fixture('pod');
  review.request.uid = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
  review.request.object.metadata.annotations.note = 'x'.repeat(ANNOTATION_BYTES);
  return Buffer.from(JSON.stringify(review));
}

/** POSTs a body on a connection of its own; the status and body, or the error's code. */
function post(port: number, path: string, body: string | Buffer): Promise<{ status: number; body: string } | string> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end(body);
  });
}

/** The process's peak resident memory so far (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const kb = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

describe.skipIf(!process.env.DATABASE_URL || process.platform !== 'linux')(
  'imagelist under a burst of the largest admission reviews (needs a PostgreSQL server: DATABASE_URL)',
  () => {
    let db: TestDatabase;
    let server: RunningServer | undefined;

    beforeAll(async () => {
      db = await createTestDatabase();
      // the fixture's images: busybox:1.36 and quay.io/shop/web:v1.4.2 by tag, ghcr.io/shop/proxy by digest
      await db.sql`INSERT INTO images (id, name, tags) VALUES
        (${BUSYBOX_DIGEST}, 'busybox', ARRAY['1.36']),
        (${WEB_DIGEST}, 'quay.io/shop/web', ARRAY['v1.4.2']),
        (${PROXY_DIGEST}, 'ghcr.io/shop/proxy', ARRAY[]::text[])`;
    }, 60_000);
    afterAll(async () => {
      await server?.stop('SIGKILL');
      await db?.close();
    });

    /** Starts the built service as the Deployment runs it (its NODE_OPTIONS and log level). */
    async function startDeployed(): Promise<{ port: number; running: RunningServer }> {
      const port = await freePort();
      server = await startServer(['--listen', `127.0.0.1:${port}`, '--database-url', db.url, '--log-level', 'info'], {
        NODE_OPTIONS: DEPLOYED_NODE_OPTIONS,
      });
      return { port, running: server };
    }

    it('answers or refuses (503) every review, answers small reviews meanwhile, and stays within the memory limit', async () => {
      const { port, running } = await startDeployed();
      const pid = running.child.pid!;
      const small = JSON.stringify({
        apiVersion: 'imagepolicy.k8s.io/v1alpha1',
        kind: 'ImageReview',
        spec: { containers: [{ image: 'quay.io/shop/web:v1.4.2' }] },
      });
      const bodies = await Promise.all(Array.from({ length: REVIEWS }, (_, i) => bigReview(i)));
      const before = peakRss(pid);

      const burst = Promise.all(bodies.map((body) => post(port, '/admission/validate', body)));
      const meanwhile = [];
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 200));
        meanwhile.push(await post(port, '/admission/imagereview', small));
      }
      const answers = await burst;

      for (const answer of meanwhile) {
        expect(answer).toMatchObject({ status: 200 });
        expect(JSON.parse((answer as { body: string }).body).status).toEqual({ allowed: true });
      }
      const reviewed = answers.filter((a) => typeof a !== 'string' && a.status === 200);
      const refused = answers.filter((a) => typeof a !== 'string' && a.status === 503);
      expect(reviewed.length + refused.length, JSON.stringify(answers.filter((a) => typeof a === 'string'))).toBe(REVIEWS);
      expect(reviewed.length).toBeGreaterThan(0);
      for (const answer of reviewed) {
        // the images are listed: each review read whole and allowed
        expect(JSON.parse((answer as { body: string }).body).response).toMatchObject({ allowed: true });
      }
      for (const answer of refused) {
        expect(JSON.parse((answer as { body: string }).body)).toMatchObject({
          status: 503,
          detail: expect.stringContaining('memory set aside'),
        });
      }
      const peak = peakRss(pid);
      expect(peak, `peak RSS ${Math.round(peak / 1e6)} MB (before the burst ${Math.round(before / 1e6)} MB)`).toBeLessThan(MEMORY_LIMIT);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(new RegExp(`^http_request_bodies_refused_total ${refused.length}$`, 'm'));
      expect(running.child.exitCode).toBeNull();
      expect(await running.stop()).toBe(0);
      server = undefined;
    }, 120_000);

    it('reads a large review while two clients trickle bodies that declare the largest size', async () => {
      const { port, running } = await startDeployed();
      // two 8 MiB bodies take the whole room; each sends a byte every 200 ms
      const tricklers = Array.from({ length: 2 }, () => {
        const socket = net.connect(port, '127.0.0.1');
        socket.write(
          `POST /admission/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${8 * 1024 * 1024}\r\n\r\n{`,
        );
        const timer = setInterval(() => socket.write(' '), 200);
        socket.on('error', () => {});
        const closed = new Promise<void>((resolve) => socket.on('close', () => resolve(clearInterval(timer))));
        return { socket, closed };
      });
      await new Promise((r) => setTimeout(r, 300));
      const review = await fixture('pod');
      review.request.object.metadata.annotations.note = 'x'.repeat(100_000);
      for (let i = 0; i < 3; i++) {
        const answer = await post(port, '/admission/validate', JSON.stringify(review));
        expect(answer).toMatchObject({ status: 200 });
        expect(JSON.parse((answer as { body: string }).body).response).toMatchObject({ allowed: true });
      }
      // the server ended both
      await Promise.all(tricklers.map((t) => t.closed));
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/^http_request_bodies_too_slow_total 2$/m);
      expect(metrics).toMatch(/^http_request_bodies_refused_total 0$/m);
      expect(await running.stop()).toBe(0);
      server = undefined;
    }, 60_000);
  },
);
