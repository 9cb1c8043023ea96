import type { App } from '@platform/http-common';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { auth, newAccount, testApp } from '../support/app.js';

/** A client that goes away in the middle of its request body, on a real socket. */
const lines: Record<string, unknown>[] = [];
let app: App;
let port: number;

beforeAll(async () => {
  app = await testApp({ logStream: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as AddressInfo).port;
});
afterAll(() => app?.close());

it('is logged as the client going away, not as AWS unreachable at error level', async () => {
  // The token verified once (bcrypt's worker started), so the next request reads its body at once.
  expect((await fetch(`http://127.0.0.1:${port}/v1/ecr/${newAccount()}/repositories`, { headers: auth })).status).toBe(200);
  const arrived = once(app.server, 'request');
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const body = '{"RepositoryName":"cut"}';
  socket.write(
    `POST /v1/ecr/${newAccount()}/repositories/grp HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${auth['x-auth-token']}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length + 100}\r\n\r\n${body}`,
  );
  // Its headers parsed and authenticated (a cached token), its body being read: then the client goes.
  await arrived;
  await sleep(100);
  socket.destroy();
  const end = Date.now() + 5000;
  while (!lines.some((l) => l.msg === 'request rejected' || (l.level as number) >= 50) && Date.now() < end) await sleep(20);

  expect(lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
  expect(JSON.stringify(lines)).not.toMatch(/AWS could not be reached/);
  expect(lines).toContainEqual(expect.objectContaining({ level: 30, msg: 'request rejected', status: 400 }));
});
