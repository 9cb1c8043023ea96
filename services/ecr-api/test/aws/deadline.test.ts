import type { App } from '@platform/http-common';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AwsDeadlineExceeded, Deadline, DeadlineGroup, ServiceClosing } from '../../src/aws/deadline.js';
import { auth, metric, motoEndpoint, newAccount, testApp } from '../support/app.js';
import { RecordingProxy } from '../support/recording-proxy.js';

/**
 * A hung AWS endpoint, for real: a TCP server that accepts connections and never answers, and a
 * proxy in front of moto that answers STS but never ECR. The service runs on a real port with the
 * SDK's default 3 attempts; a 1 s deadline keeps the test short (production: 25 s).
 */
const DEADLINE_MS = 1000;
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

/** Accepts every connection, reads (and drops) what arrives, and never writes a byte. */
async function silentServer(): Promise<{ endpoint: string; open: () => number; accepted: () => number }> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.resume(); // reading is what lets it see the client's FIN
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, open: () => sockets.size, accepted: () => accepted };
}

async function listening(app: App): Promise<string> {
  closers.push(() => app.close());
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/ecr`;
}

async function until(what: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!what() && Date.now() < end) await sleep(20);
  return what();
}

describe('the AWS deadline per client request', () => {
  it('answers 504 problem+json when STS accepts the connection and never answers, and lets go of the socket', async () => {
    const hung = await silentServer();
    const base = await listening(await testApp({ deadlineMs: DEADLINE_MS, aws: { endpoint: hung.endpoint } }));
    const started = Date.now();
    const res = await fetch(`${base}/${newAccount()}/repositories`, { headers: auth });
    const elapsed = Date.now() - started;

    expect(res.status).toBe(504);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await res.json()).toMatchObject({ status: 504, title: 'Gateway Timeout', detail: expect.stringContaining('1 s') as string });
    expect(hung.accepted()).toBeGreaterThan(0);
    // The deadline, not the SDK's 3 attempts x 10 s: generous bounds for a loaded CI machine.
    expect(elapsed).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    expect(elapsed).toBeLessThan(DEADLINE_MS + 8000);
    // The attempt in flight is aborted, not left waiting on the socket.
    expect(await until(() => hung.open() === 0)).toBe(true);
    // And the API document says so.
    const doc = await (await fetch(`${base}/docs/json`)).json();
    expect(doc).toHaveProperty(['paths', '/v1/ecr/{account}/repositories', 'get', 'responses', '504']);
  });

  it('answers 504 when ECR hangs after AssumeRole succeeded, for every request, whatever the retries', async () => {
    const proxy = await new RecordingProxy(motoEndpoint()).start();
    closers.push(() => proxy.stop());
    proxy.hang = (operation) => operation === 'DescribeRepositories' || operation === 'CreateRepository';
    const app = await testApp({ deadlineMs: DEADLINE_MS, aws: { endpoint: proxy.endpoint } });
    const base = await listening(app);
    const account = newAccount();

    const answers = await Promise.all(
      ['repositories', 'repositories/grp', 'repositories/grp/app'].map(async (path) => {
        const res = await fetch(`${base}/${account}/${path}`, { headers: auth });
        return { status: res.status, type: res.headers.get('content-type') };
      }),
    );
    const created = await fetch(`${base}/${account}/repositories/grp`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ RepositoryName: 'app' }),
    });
    answers.push({ status: created.status, type: created.headers.get('content-type') });
    expect(proxy.count('CreateRepository')).toBeGreaterThan(0);
    for (const a of answers) expect(a).toEqual({ status: 504, type: expect.stringMatching(/^application\/problem\+json/) as string });
    expect(await metric(app, 'sts_assume_role_total', { outcome: 'success' })).toBe(1);

    // The endpoint recovers: the same service answers again, with the cached credentials.
    proxy.hang = () => false;
    expect((await fetch(`${base}/${account}/repositories`, { headers: auth })).status).toBe(200);
    expect(await metric(app, 'sts_assume_role_total', { outcome: 'success' })).toBe(1);
  });

  it('handles the rejection of a call that settles after its deadline had already passed', async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    try {
      const deadline = Deadline.in(0);
      let abort!: (err: Error) => void;
      const call = new Promise<never>((_resolve, reject) => (abort = reject));
      await expect(deadline.race(call)).rejects.toBeInstanceOf(AwsDeadlineExceeded);
      abort(new Error('Request aborted'));
      await sleep(20);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', record);
    }
  });

  it("answers 504, not 502, when an attempt times out (the SDK's own TimeoutError) before the deadline", async () => {
    const proxy = await new RecordingProxy(motoEndpoint()).start();
    closers.push(() => proxy.stop());
    proxy.hang = (operation) => operation === 'DescribeRepositories';
    // One attempt with a 300 ms answer timeout, well inside a 5 s deadline: the SDK gives up first.
    const app = await testApp({
      deadlineMs: 5000,
      aws: { endpoint: proxy.endpoint, maxAttempts: 1, attemptTimeouts: { requestTimeout: 300 } },
    });
    const base = await listening(app);
    const started = Date.now();
    const res = await fetch(`${base}/${newAccount()}/repositories`, { headers: auth });
    expect(Date.now() - started).toBeLessThan(4000);
    expect(res.status).toBe(504);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await res.json()).toMatchObject({ status: 504, detail: 'AWS did not answer in time (TimeoutError); retry later.' });
  });
});

describe("a change's share of its request's deadline (Deadline.before)", () => {
  it('fires that much before the request’s deadline, naming the request’s length', async () => {
    const request = Deadline.in(400);
    const change = request.before(300);
    const started = Date.now();
    await expect(change.race(new Promise(() => {}))).rejects.toEqual(new AwsDeadlineExceeded(400));
    expect(Date.now() - started).toBeLessThan(250);
    expect(request.passed).toBe(false);
    change.dispose();
    request.dispose();
  });

  it('ends when the request’s deadline ends first (a shutdown), with its reason', async () => {
    const group = new DeadlineGroup();
    const request = group.deadline(60_000);
    const change = request.before(3_000);
    const waiting = change.race(new Promise(() => {}));
    group.end(new ServiceClosing());
    await expect(waiting).rejects.toBeInstanceOf(ServiceClosing);
    expect(request.before(3_000).passed).toBe(true);
  });
});
