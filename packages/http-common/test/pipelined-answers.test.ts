import Type from 'typebox';
import { describe, expect, it } from 'vitest';
import { MAX_QUEUED_RESPONSES } from '../src/node-server.js';
import { appPerScheme, exchange, type Scheme } from './support/both-schemes.js';

// Clients on real sockets, over HTTP and HTTPS, that write their requests at once and read every
// answer: each request answered, in order.
const server = appPerScheme('pipelined-answers-', {}, (app) => {
  const stored = new Map<string, number>();
  app.get('/things/:id', { schema: { params: Type.Object({ id: Type.String() }) } }, async (request) => ({ id: request.params.id }));
  // made and answered after a turn of the event loop, as a write waits for the database
  app.put(
    '/things/:id',
    { schema: { params: Type.Object({ id: Type.String() }), body: Type.Object({ n: Type.Integer() }) } },
    async (request) => {
      await new Promise((r) => setTimeout(r, 50));
      stored.set(request.params.id, request.body.n);
      return { id: request.params.id, n: request.body.n };
    },
  );
  app.get('/stored/:id', { schema: { params: Type.Object({ id: Type.String() }) } }, async (request, reply) =>
    stored.has(request.params.id) ? { id: String(stored.get(request.params.id)) } : reply.code(404).send(),
  );
});

/**
 * Writes `requests` in one chunk, reads until the server closes, and returns the ids of the
 * answers in the order they came, or their status if not 200.
 */
async function pipeline(scheme: Scheme, requests: string[]): Promise<(string | number)[]> {
  const got = await exchange(scheme, server(scheme).port, requests.join(''), 5000);
  return [...got.matchAll(/HTTP\/1\.1 (\d{3}) [^]*?\r\n\r\n(\{[^}]*\})?/g)].map(([, status, body]) =>
    status === '200' ? (JSON.parse(body!) as { id: string }).id : Number(status),
  );
}

const closing = (id: number) => `GET /things/${id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;
const get = (id: number, pad = 0) => `GET /things/${id} HTTP/1.1\r\nHost: x\r\n${pad ? `X-Pad: ${'p'.repeat(pad)}\r\n` : ''}\r\n`;
const put = (id: number) => {
  const body = JSON.stringify({ n: id });
  return `PUT /things/${id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
};
const ids = (from: number, count: number) => Array.from({ length: count }, (_, i) => String(from + i));

describe.each(['http', 'https'] as const)('over %s', (scheme) => {
  // Node hands every request it parses to its handler at once: a read pipelined behind a write ran
  // before the write was made, and answered 404 for what the client had just written. RFC 9112
  // 9.3.2 lets a server work on pipelined requests in parallel only if all are safe.
  it('a request pipelined behind a write is worked on once the write is answered', async () => {
    const id = scheme === 'http' ? 21 : 22;
    const read = `GET /stored/${id} HTTP/1.1\r\nHost: x\r\n\r\n`;
    expect(await pipeline(scheme, [put(id), read, closing(3)])).toEqual([String(id), String(id), '3']);
  });

  // Over HTTPS the connection was destroyed as soon as the 429 was handed to TLS, with the rest of
  // the client's requests unread: the reset discarded answers the client had not read yet (11 of
  // the 17 and no 429, for 100 requests of 1 KB).
  it('a client that pipelines past the bound gets the answers it may queue, then the 429', async () => {
    const requests = Array.from({ length: 100 }, (_, i) => get(i, 1000));
    expect(await pipeline(scheme, requests)).toEqual([...ids(0, MAX_QUEUED_RESPONSES + 1), 429]);
  });
});
