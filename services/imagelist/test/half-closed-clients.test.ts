import { selfSignedCertificate } from '@platform/test-cert';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// imagelist as deployed (HTTPS, tokens) and a client that writes its requests at once and shuts
// its side of the connection, as `nc -N` or a script's shutdown(SHUT_WR) does: before, Node closed
// the connection with the answers unsent, and the PUT was made while its client was told nothing.
let db: TestDatabase;
let dir: string;
let server: RunningServer | undefined;
let port: number;
const TOKEN = 'half-closed-token';

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'imagelist-half-closed-'));
  selfSignedCertificate(dir, { name: 'serving', cn: 'imagelist' });
  await writeFile(path.join(dir, 'tokens.yaml'), `tokens:\n  - name: ci\n    token: '${TOKEN}'\n`);
  port = await freePort();
  const [certfile, keyfile] = ['crt', 'key'].map((ext) => path.join(dir, `serving.${ext}`));
  server = await startServer(
    ['--listen', `127.0.0.1:${port}`, '--certfile', certfile!, '--keyfile', keyfile!, '--tokens-file', path.join(dir, 'tokens.yaml')],
    { DATABASE_URL: db.url },
  );
});
afterAll(async () => {
  await server?.stop('SIGKILL');
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes `requests` at once, shuts the client's side, and returns the answers (status and body) until the server closes. */
async function writeAndShut(requests: string[]): Promise<{ status: number; body: string }[]> {
  const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  await once(socket, 'secureConnect');
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString()));
  socket.on('error', () => {});
  const closed = new Promise((r) => socket.on('close', r));
  socket.end(requests.join(''));
  await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]);
  socket.destroy();
  return [...got.matchAll(/HTTP\/1\.1 (\d{3}) [^]*?content-length: (\d+)[^]*?\r\n\r\n/gi)].map((m) => ({
    status: Number(m[1]),
    body: got.slice(m.index + m[0].length, m.index + m[0].length + Number(m[2])),
  }));
}

const request = (method: string, url: string, body?: unknown, headers = '') => {
  const json = body === undefined ? '' : JSON.stringify(body);
  const length = body === undefined ? '' : `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n`;
  return `${method} ${url} HTTP/1.1\r\nHost: imagelist\r\n${headers}${length}\r\n${json}`;
};

describe.skipIf(!process.env.DATABASE_URL)(
  'a client that shuts its side once it has written (needs a PostgreSQL server: DATABASE_URL)',
  () => {
    it('gets the answer to its PUT, a read and an admission review, in order, and the PUT is made', async () => {
      const image = { id: `sha256:${DIGEST_A}`, name: 'quay.io/half/closed', tags: ['v1'] };
      const review = {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: {
          uid: 'half-closed-uid',
          kind: { group: '', version: 'v1', kind: 'Pod' },
          resource: { group: '', version: 'v1', resource: 'pods' },
          namespace: 'shop',
          operation: 'CREATE',
          object: {
            kind: 'Pod',
            metadata: { name: 'p' },
            spec: { containers: [{ name: 'c', image: `quay.io/half/closed@sha256:${DIGEST_A}` }] },
          },
        },
      };
      const answers = await writeAndShut([
        request('PUT', '/images', image, `Authorization: Bearer ${TOKEN}\r\n`),
        request('GET', `/images/sha256:${DIGEST_A}`),
        request('POST', '/admission/validate', review),
      ]);
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
      expect(JSON.parse(answers[0]!.body)).toMatchObject({ id: DIGEST_A, name: image.name, tags: ['v1'] });
      expect(JSON.parse(answers[1]!.body)).toMatchObject({ id: DIGEST_A, name: image.name });
      expect(JSON.parse(answers[2]!.body)).toMatchObject({ response: { uid: 'half-closed-uid', allowed: true } });
    });
  },
);
