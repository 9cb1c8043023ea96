import { selfSignedCertificate } from '@platform/test-cert';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The CN of the certificate served on 127.0.0.1:port. */
async function servedCn(port: number): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  try {
    await once(socket, 'secureConnect');
    return String(socket.getPeerCertificate().subject.CN);
  } finally {
    socket.destroy();
  }
}

/**
 * A child process serving HTTPS with the built reloadTlsOnChange over `files`, told over IPC to take
 * every file descriptor it can (opening /dev/null until EMFILE), to give them back, and to close
 * the reload. Its log lines come back over IPC too.
 */
async function serverProcess(files: { certfile: string; keyfile: string }) {
  const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
  const script = `
    const { openSync, closeSync } = await import('node:fs');
    const { createServer } = await import('node:https');
    const { readTls, reloadTlsOnChange } = await import(${JSON.stringify(dist)});
    const files = ${JSON.stringify(files)};
    const send = (level) => (fields, msg) => process.send({ log: level, msg, err: fields.err?.message });
    const server = createServer(readTls(files), (req, res) => res.end());
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const reload = await reloadTlsOnChange(server, files, { info: send('info'), error: send('error') });
    let held = [];
    process.on('message', async ({ op }) => {
      if (op === 'exhaust') {
        // Once the connections the test made are closed: each one closing would give a descriptor back.
        while (await new Promise((resolve) => server.getConnections((err, n) => resolve(n)))) await new Promise((r) => setTimeout(r, 10));
        try { for (;;) held.push(openSync('/dev/null', 'r')); } catch (err) { process.send({ op, code: err.code }); }
      } else if (op === 'release') {
        for (const fd of held.splice(0)) closeSync(fd);
        process.send({ op });
      } else if (op === 'close') {
        await reload.close();
        process.send({ op });
      }
    });
    process.send({ op: 'ready', port: server.address().port });`;
  // A limit of its own, so that running out takes a thousand opens whatever the machine allows.
  const child = spawn('/bin/sh', ['-c', 'ulimit -n 1024 && exec "$@"', 'sh', process.execPath, '--input-type=module', '-e', script], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const logs: { log: string; msg: string; err?: string }[] = [];
  const answers: Record<string, unknown>[] = [];
  child.on('message', (m: Record<string, unknown>) => {
    if ('log' in m) logs.push(m as never);
    else answers.push(m);
  });
  const ask = async (op: string) => {
    const before = answers.length;
    child.send({ op });
    await eventually(() => answers.length > before);
    return answers[before]!;
  };
  await eventually(() => answers.some((a) => a.op === 'ready'), 10_000);
  const port = answers.find((a) => a.op === 'ready')!.port as number;
  return { child, logs, ask, port };
}

describe('the certificate reload when a read fails without a change to the files', () => {
  let dir: string;
  let child: ChildProcess | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tls-reload-'));
  });
  afterEach(async () => {
    child?.kill('SIGKILL');
    child = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  /** A server on a certificate for CN `first`, whose files are replaced by one for `second` while it has no descriptor left. */
  async function rotatedWhileOutOfDescriptors() {
    const files = selfSignedCertificate(dir, { name: 'serving', cn: 'first' });
    const proc = await serverProcess(files);
    child = proc.child;
    expect(await servedCn(proc.port)).toBe('first');
    expect(await proc.ask('exhaust')).toMatchObject({ code: 'EMFILE' });
    selfSignedCertificate(dir, { name: 'next', cn: 'second' });
    await rename(path.join(dir, 'next.key'), files.keyfile);
    await rename(path.join(dir, 'next.crt'), files.certfile);
    await eventually(() => proc.logs.some((l) => l.log === 'error'));
    expect(proc.logs.find((l) => l.log === 'error')).toMatchObject({
      msg: 'TLS certificate reload failed; keeping the previous one',
      err: expect.stringContaining('EMFILE'),
    });
    return proc;
  }

  it('loads the pair again by itself once it can (EMFILE)', async () => {
    const proc = await rotatedWhileOutOfDescriptors();
    // Long enough for a couple of retries, each failing: logged once.
    await new Promise((r) => setTimeout(r, 2500));
    await proc.ask('release');
    const released = Date.now();
    await eventually(async () => (await servedCn(proc.port)) === 'second', 5000);
    expect(Date.now() - released).toBeLessThan(3000); // a retry a second
    expect(proc.logs.filter((l) => l.log === 'error')).toHaveLength(1);
    expect(proc.logs.filter((l) => l.msg === 'TLS certificate reloaded')).toHaveLength(1);
  }, 20_000);

  it('stops loading it again once closed', async () => {
    const proc = await rotatedWhileOutOfDescriptors();
    await proc.ask('close');
    await proc.ask('release');
    await new Promise((r) => setTimeout(r, 2500));
    expect(await servedCn(proc.port)).toBe('first');
    expect(proc.logs.filter((l) => l.msg === 'TLS certificate reloaded')).toEqual([]);
  }, 20_000);
});
