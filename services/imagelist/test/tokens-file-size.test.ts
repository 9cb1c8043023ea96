import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIGEST_A } from './support/app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { imagelistClient } from './support/http-client.js';
import { freePort, startServer, type RunningServer } from './support/server-process.js';

// The tokens file is re-read while the process serves; one far larger than any tokens file (a
// wrong file mounted, a generator run away) must not stall admission. The process as deployed.
let db: TestDatabase;
let dir: string;
let server: RunningServer | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(tmpdir(), 'imagelist-tokens-'));
});
afterAll(async () => {
  await server?.stop('SIGKILL');
  await rm(dir, { recursive: true, force: true });
  await db?.close();
});

describe('a huge tokens file', () => {
  it('is refused unparsed at runtime (the last tokens stay) and at start (exit 2); admission never stalls', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, "tokens:\n  - name: ci\n    token: 'good-token-1'\n");
    const port = await freePort();
    server = await startServer(['--listen', `127.0.0.1:${port}`, '--tokens-file', file], { DATABASE_URL: db.url });
    const { call: timed, review } = imagelistClient(`http://127.0.0.1:${port}`, 30_000);

    // 4 MB of valid YAML: 80,000 tokens
    let big = 'tokens:\n';
    for (let i = 0; i < 80_000; i++) big += `  - name: t${i}\n    token: '${String(i).padStart(24, '0')}'\n`;
    await writeFile(file, big);
    const started = Date.now();
    let slowest = 0;
    while (Date.now() - started < 3000) {
      const res = await review('nginx');
      expect(res.status).toBe(200);
      slowest = Math.max(slowest, res.ms);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(slowest).toBeLessThan(1000);
    expect(server.output()).toMatch(/tokens file is \d+ bytes, more than the 1048576[^\n]*keeping the previous tokens/);
    const put = await timed('/images', {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: 'Bearer good-token-1' },
      body: JSON.stringify({ id: DIGEST_A, name: 'quay.io/team/app', tags: ['v1'] }),
    });
    expect(put.status).toBe(200);
    await server.stop();
    server = undefined;

    const { runCli } = await import('./support/server-process.js');
    const start = await runCli(['--listen', '127.0.0.1:0', '--tokens-file', file], { DATABASE_URL: db.url });
    expect(start.code).toBe(2);
    expect(start.stderr).toContain('more than the 1048576');
  }, 60_000);
});
