import { describe, expect, it } from 'vitest';
import { appPerScheme, exchange, type Scheme } from './support/both-schemes.js';

// A request pipelined behind one still being answered waits, its body unread, until the answers
// ahead are sent. Node's request timeout counted that wait against it: a body larger than what
// Node buffers (here 512 KB) pipelined behind an answer that took longer than the request timeout
// was cut off, the connection closed after the answer ahead, and the request never answered.
const REQUEST_MS = 1000;
const server = appPerScheme('pipelined-body-turn-', { timeouts: { requestMs: REQUEST_MS, headersMs: REQUEST_MS } }, (app) => {
  app.get('/slow', async () => {
    await new Promise((r) => setTimeout(r, 2 * REQUEST_MS));
    return { slow: true };
  });
  app.post('/echo', async (request) => ({ bytes: JSON.stringify(request.body).length }));
});

/** Writes `data`, reads until the server closes or 6 s pass, and returns the statuses. */
async function statuses(scheme: Scheme, data: string): Promise<number[]> {
  const got = await exchange(scheme, server(scheme).port, data, 6000);
  return [...got.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
}

const body = JSON.stringify({ pad: 'p'.repeat(512 * 1024) });
const post = (length = body.length) =>
  `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
const slow = 'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n';
const last = 'GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';

describe.each(['http', 'https'] as const)('over %s', (scheme) => {
  it('a body pipelined behind an answer slower than the request timeout is read and answered in its turn', async () => {
    expect(await statuses(scheme, slow + post() + body + last)).toEqual([200, 200, 200]);
  }, 10_000);

  // Its turn come, the request timeout still bounds it, from then on.
  it('a body pipelined behind a slow answer that does not arrive in its turn gets its 408', async () => {
    const started = Date.now();
    expect(await statuses(scheme, slow + post() + body.slice(0, 1000))).toEqual([200, 408]);
    expect(Date.now() - started).toBeLessThan(2 * REQUEST_MS + REQUEST_MS + 1500);
  }, 10_000);
});
