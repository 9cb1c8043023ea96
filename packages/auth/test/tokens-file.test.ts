import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, open, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenStore, parseTokensFile } from '../src/index.js';

const yaml = (...tokens: [name: string, token: string, disabled?: boolean][]) =>
  `tokens:\n${tokens.map(([n, t, d]) => `  - name: ${n}\n    token: '${t}'\n    is_disabled: ${d ? 'true' : 'false'}\n`).join('')}`;

function quietLog() {
  return { info: vi.fn(), warn: vi.fn(), error: vi.fn() };
}

/** Waits until the store's view of `token` is `expected` (reloads are asynchronous). */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

let dir: string;
let store: TokenStore | undefined;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tokens-'));
});
afterEach(async () => {
  await store?.close();
  store = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('parseTokensFile', () => {
  it('keeps enabled tokens only', () => {
    expect(parseTokensFile(yaml(['ci', 'a'], ['old', 'b', true])).map((e) => e.name)).toEqual(['ci']);
  });
  it('refuses a token disabled under one name although the file also lists it enabled under another', () => {
    for (const order of [
      [
        ['ci', 'shared'],
        ['ci-old', 'shared', true],
        ['other', 'c'],
      ],
      [
        ['ci-old', 'shared', true],
        ['ci', 'shared'],
        ['other', 'c'],
      ],
    ] as [string, string, boolean?][][]) {
      expect(parseTokensFile(yaml(...order)).map((e) => e.name)).toEqual(['other']);
    }
  });
  it('reads the file as the original service did: is_disabled as YAML 1.1 (yes, on, y), names and tokens as written', () => {
    const file = (value: string) => `tokens:\n  - name: ci\n    token: 'a'\n    is_disabled: ${value}\n`;
    for (const disabled of ['yes', 'Yes', 'on', 'ON', 'y', 'true', 'True']) expect(parseTokensFile(file(disabled)), disabled).toEqual([]);
    for (const enabled of ['no', 'off', 'n', 'false', 'FALSE'])
      expect(
        parseTokensFile(file(enabled)).map((e) => e.name),
        enabled,
      ).toEqual(['ci']);
    // a quoted "yes" is a string, which Go would not read into a bool either
    expect(() => parseTokensFile(file('"yes"'))).toThrow(/is_disabled/);
    const store = parseTokensFile(`tokens:\n  - name: off\n    token: 0x1F\n  - name: yes\n    token: 1:20\n`);
    expect(store.map((e) => e.name)).toEqual(['off', 'yes']);
  });
  it('refuses a token or name that is a YAML null, never taking it as the text `null` or `~`', () => {
    for (const value of ['null', 'Null', 'NULL', '~']) {
      expect(() => parseTokensFile(`tokens:\n  - name: ci\n    token: ${value}\n`), value).toThrow(/\/tokens\/0\/token must be string/);
      expect(() => parseTokensFile(`tokens:\n  - name: ${value}\n    token: abc\n`), value).toThrow(/\/tokens\/0\/name must be string/);
    }
    // quoted, it is a string like any other
    expect(parseTokensFile(`tokens:\n  - name: ci\n    token: 'null'\n`).map((e) => e.name)).toEqual(['ci']);
  });
  it('rejects files of another shape', () => {
    expect(() => parseTokensFile('tokens:\n  - name: x\n')).toThrow(/tokens file/);
    expect(() => parseTokensFile('- a\n- b\n')).toThrow(/tokens file/);
    expect(() => parseTokensFile('tokens: [')).toThrow();
  });
  it('says where a file is not valid YAML without quoting it: the lines around the error are tokens', () => {
    const invalid = [
      ["tokens:\n  - name: ci\n    token: 'LeakTok3nQQ42'x\n", /UNEXPECTED_TOKEN at line 3, column 27/],
      ["tokens:\n  - name: ci\n    token: 'LeakTok3nQQ42'\n    token: 'LeakTok3nQQ43'\n", /DUPLICATE_KEY at line 4, column 5/],
      ['tokens:\n  - name: ci\n    token: *LeakTok3nQQ42\n', /not valid YAML/],
    ] as const;
    for (const [text, where] of invalid) {
      let message = '';
      try {
        parseTokensFile(text);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(where);
      expect(message).not.toContain('LeakTok3n');
    }
  });
  it('refuses a file over 1 MiB unparsed, saying its size', () => {
    const big = `tokens:\n${'  - name: t\n    token: x\n'.repeat(50_000)}`;
    expect(() => parseTokensFile(big)).toThrow(/tokens file is \d+ bytes, more than the 1048576/);
  });
  it('accepts an empty list', () => {
    expect(parseTokensFile('tokens: []\n')).toEqual([]);
    expect(parseTokensFile('tokens:\n')).toEqual([]);
  });
});

describe('TokenStore', () => {
  it('verifies enabled tokens, by name, and nothing else', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'LF8zuwb2dJMjZLphiSUQHTeA'], ['off', 'disabledtoken', true]));
    store = await new TokenStore(file, quietLog()).start();
    expect(store.verify('LF8zuwb2dJMjZLphiSUQHTeA')).toBe('ci');
    expect(store.verify('disabledtoken')).toBeUndefined();
    expect(store.verify('LF8zuwb2dJMjZLphiSUQHTe')).toBeUndefined();
    expect(store.verify('')).toBeUndefined();
  });

  it('reloads a file written in place', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'one']));
    store = await new TokenStore(file, quietLog()).start();
    await writeFile(file, yaml(['ci', 'two']));
    await eventually(() => store!.verify('two') === 'ci');
    expect(store.verify('one')).toBeUndefined();
  });

  it('reloads a file atomically replaced by a rename', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'one']));
    store = await new TokenStore(file, quietLog()).start();
    const tmp = path.join(dir, '.tokens.yaml.tmp');
    await writeFile(tmp, yaml(['deploy', 'two']));
    await rename(tmp, file);
    await eventually(() => store!.verify('two') === 'deploy');
    expect(store.verify('one')).toBeUndefined();
    // and again, to show the watch survives the replaced inode
    await writeFile(tmp, yaml(['deploy', 'three']));
    await rename(tmp, file);
    await eventually(() => store!.verify('three') === 'deploy');
  });

  it('follows a Kubernetes Secret volume update (the ..data symlink swap)', async () => {
    // The kubelet's layout: tokens.yaml -> ..data/tokens.yaml, ..data -> ..<timestamp>/
    const v1 = path.join(dir, '..2026_11_22_10_00_00.1');
    await mkdir(v1);
    await writeFile(path.join(v1, 'tokens.yaml'), yaml(['ci', 'one']));
    await symlink(path.basename(v1), path.join(dir, '..data'));
    await symlink('..data/tokens.yaml', path.join(dir, 'tokens.yaml'));
    store = await new TokenStore(path.join(dir, 'tokens.yaml'), quietLog()).start();
    expect(store.verify('one')).toBe('ci');

    const v2 = path.join(dir, '..2026_11_22_10_05_00.2');
    await mkdir(v2);
    await writeFile(path.join(v2, 'tokens.yaml'), yaml(['ci', 'rotated']));
    await symlink(path.basename(v2), path.join(dir, '..data_tmp'));
    await rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    await rm(v1, { recursive: true });
    await eventually(() => store!.verify('rotated') === 'ci');
    expect(store.verify('one')).toBeUndefined();
  });

  it('reloads a file replaced by one of the same size and an older mtime (cp -p, rsync -a, a restored backup)', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'compromised']));
    store = await new TokenStore(file, quietLog()).start();
    const tmp = path.join(dir, '.tokens.yaml.tmp');
    await writeFile(tmp, yaml(['ci', 'rotated-tok']));
    await utimes(tmp, new Date('2026-01-01'), new Date('2026-01-01'));
    await rename(tmp, file);
    await eventually(() => store!.verify('rotated-tok') === 'ci');
    expect(store.verify('compromised')).toBeUndefined();
  });

  it('keeps following the file after its directory is renamed over, or swapped through a symlink (git-sync)', async () => {
    // --tokens-file <dir>/current/tokens.yaml, `current` a directory replaced by a rename
    const current = path.join(dir, 'current');
    await mkdir(current);
    await writeFile(path.join(current, 'tokens.yaml'), yaml(['ci', 'one']));
    store = await new TokenStore(path.join(current, 'tokens.yaml'), quietLog()).start();
    const next = path.join(dir, 'next');
    await mkdir(next);
    await writeFile(path.join(next, 'tokens.yaml'), yaml(['ci', 'two']));
    await rm(current, { recursive: true });
    await rename(next, current);
    await eventually(() => store!.verify('two') === 'ci');
    // and still watched: a delete afterwards revokes every token
    await unlink(path.join(current, 'tokens.yaml'));
    await eventually(() => store!.verify('two') === undefined);
    await store.close();

    // `link` a symlink to a revision's directory, swapped atomically to the next revision's
    for (const rev of ['rev1', 'rev2']) await mkdir(path.join(dir, rev));
    await writeFile(path.join(dir, 'rev1', 'tokens.yaml'), yaml(['ci', 'one']));
    await writeFile(path.join(dir, 'rev2', 'tokens.yaml'), yaml(['ci', 'two']));
    await symlink('rev1', path.join(dir, 'link'));
    store = await new TokenStore(path.join(dir, 'link', 'tokens.yaml'), quietLog()).start();
    await symlink('rev2', path.join(dir, 'link.tmp'));
    await rename(path.join(dir, 'link.tmp'), path.join(dir, 'link'));
    await eventually(() => store!.verify('two') === 'ci');
    expect(store.verify('one')).toBeUndefined();
    await writeFile(path.join(dir, 'rev2', 'tokens.yaml'), yaml(['ci', 'three']));
    await eventually(() => store!.verify('three') === 'ci');
  });

  it('reloads a file it reaches through a symlink when the file is edited in place', async () => {
    const elsewhere = path.join(dir, 'secrets');
    await mkdir(elsewhere);
    await writeFile(path.join(elsewhere, 'tokens.yaml'), yaml(['ci', 'one']));
    await mkdir(path.join(dir, 'etc'));
    await symlink(path.join(elsewhere, 'tokens.yaml'), path.join(dir, 'etc', 'tokens.yaml'));
    store = await new TokenStore(path.join(dir, 'etc', 'tokens.yaml'), quietLog()).start();
    // A few polls first: an edit this early was seen by the watch of the directory as it started.
    await new Promise((r) => setTimeout(r, 600));
    await writeFile(path.join(elsewhere, 'tokens.yaml'), yaml(['ci', 'two']));
    await eventually(() => store!.verify('two') === 'ci');
    expect(store.verify('one')).toBeUndefined();
  });

  it('never applies a file still being written: a prefix that leaves out `is_disabled: true` enables nothing', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'one']));
    // Polled every 5 ms, so that the prefix is read within the pause below, as it would be if a
    // poll fell into it.
    store = await new TokenStore(file, quietLog(), { pollMs: 5 }).start();
    const whole = yaml(['ci', 'one'], ['off', 'disabledtoken', true]);
    // Cut before the last line: valid YAML, in which 'off' is enabled.
    const cut = whole.lastIndexOf('    is_disabled');
    expect(parseTokensFile(whole.slice(0, cut)).map((e) => e.name)).toEqual(['ci', 'off']);
    let enabled = 0;
    const watch = setInterval(() => {
      if (store!.verify('disabledtoken') !== undefined) enabled++;
    }, 1);
    const handle = await open(file, 'w');
    try {
      await handle.write(whole.slice(0, cut));
      // Longer than the watcher's debounce, so the prefix is read; shorter than the settle time.
      await new Promise((r) => setTimeout(r, 70));
      await handle.write(whole.slice(cut));
      await handle.close();
      await eventually(() => store!.verify('one') === 'ci' && store!.size === 1);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      clearInterval(watch);
      await handle.close().catch(() => {}); // closed already, unless a write failed
    }
    expect(enabled).toBe(0);
    expect(store.size).toBe(1);
  });

  it('keeps the last good tokens when the file becomes invalid, and logs an error', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'one']));
    const log = quietLog();
    store = await new TokenStore(file, log).start();
    await writeFile(file, "tokens:\n  - name: ci\n    token: 'LeakTok3nQQ42'x\n");
    await eventually(() => log.error.mock.calls.length > 0);
    expect(store.verify('one')).toBe('ci');
    expect(JSON.stringify(log.error.mock.calls)).toMatch(/UNEXPECTED_TOKEN at line 3/);
    expect(JSON.stringify(log.error.mock.calls)).not.toContain('LeakTok3n');
    await writeFile(file, yaml(['ci', 'fixed']));
    await eventually(() => store!.verify('fixed') === 'ci');
  });

  it('refuses a file over 1 MiB by its size, unread, keeping the last good tokens', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'one']));
    const log = quietLog();
    store = await new TokenStore(file, log).start();
    // 600 MB (sparse): more than a string holds, so reading it whole failed as if unreadable
    const handle = await open(file, 'r+');
    await handle.truncate(600 * 1024 * 1024);
    await handle.close();
    await eventually(() => log.error.mock.calls.length > 0);
    expect(JSON.stringify(log.error.mock.calls)).toMatch(/tokens file is 629145600 bytes, more than the 1048576/);
    expect(log.warn).not.toHaveBeenCalled();
    expect(store.verify('one')).toBe('ci');
    await store.close();
    await expect(new TokenStore(file, quietLog()).start()).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining('tokens file is 629145600 bytes'),
    });
  });

  it('warns, by name and never quoting them, of tokens no Authorization header can carry', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'Good-T0ken'], ['spaced', ' Spac3dSecret '], ['accented', 'pässw0rd'], ['off', ' x ', true]));
    const log = quietLog();
    store = await new TokenStore(file, log).start();
    expect(log.warn).toHaveBeenCalledTimes(1);
    expect(log.warn.mock.calls[0]![0]).toMatchObject({ names: ['spaced', 'accented'] });
    expect(JSON.stringify(log.warn.mock.calls)).not.toMatch(/Spac3d|w0rd/);
    // the HTTP parser trims the header: what the client sends for ' Spac3dSecret ' cannot match
    expect(store.verify('Spac3dSecret')).toBeUndefined();
    await writeFile(file, yaml(['ci', 'Good-T0ken'], ['spaced', 'Spac3dSecret']));
    await eventually(() => store!.verify('Spac3dSecret') === 'spaced');
    expect(log.warn).toHaveBeenCalledTimes(1);
  });

  it('warns, by name, of valid tokens whose entries have keys it ignores, such as a misspelt is_disabled', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, `${yaml(['ci', 'Good-T0ken'])}  - name: revoked\n    token: 'Leak3dTok'\n    is_disabeld: true\n`);
    const log = quietLog();
    store = await new TokenStore(file, log).start();
    expect(store.verify('Leak3dTok')).toBe('revoked');
    expect(log.warn).toHaveBeenCalledTimes(1);
    expect(log.warn.mock.calls[0]![0]).toMatchObject({ tokens: [{ name: 'revoked', keys: ['is_disabeld'] }] });
    expect(JSON.stringify(log.warn.mock.calls)).not.toContain('Leak3d');
  });

  it('fails closed: a deleted file means no token is valid, until it comes back', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'one']));
    store = await new TokenStore(file, quietLog()).start();
    await unlink(file);
    await eventually(() => store!.verify('one') === undefined);
    expect(store.size).toBe(0);
    await writeFile(file, yaml(['ci', 'one']));
    await eventually(() => store!.verify('one') === 'ci');
  });

  it('refuses to start when the file is missing or invalid, naming the file and the problem (exit 2)', async () => {
    const missing = path.join(dir, 'missing.yaml');
    await expect(new TokenStore(missing, quietLog()).start()).rejects.toMatchObject({
      name: 'ConfigError',
      exitCode: 2,
      message: expect.stringContaining(missing),
    });
    const invalid = path.join(dir, 'invalid.yaml');
    await writeFile(invalid, 'tokens: [ {name: broken');
    await expect(new TokenStore(invalid, quietLog()).start()).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining(invalid),
    });
  });

  it('logs an invalid file once per change, and ignores other files in its directory', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'one']));
    const log = quietLog();
    store = await new TokenStore(file, log).start();
    await writeFile(file, 'tokens: [ {name: broken');
    await eventually(() => log.error.mock.calls.length > 0);
    for (let i = 0; i < 100; i++) await writeFile(path.join(dir, 'imagelist.log'), `line ${i}\n`, { flag: 'a' });
    await new Promise((r) => setTimeout(r, 300));
    expect(log.error).toHaveBeenCalledTimes(1);
    expect(log.info.mock.calls.filter(([, msg]) => msg === 'tokens loaded')).toHaveLength(1);
  });
});

describe('TokenStore when a read fails without a change to the file', () => {
  /**
   * A child process running the built TokenStore over `file`, told over IPC to take every file
   * descriptor it can (opening /dev/null until EMFILE), to give them back, to verify a token and to
   * close the store. Its log lines come back over IPC too.
   */
  async function storeProcess(file: string) {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const script = `
      const { openSync, closeSync } = await import('node:fs');
      const { TokenStore } = await import(${JSON.stringify(dist)});
      const send = (level) => (fields, msg) => process.send({ log: level, msg, ...fields });
      const store = await new TokenStore(${JSON.stringify(file)}, { info: send('info'), warn: send('warn'), error: send('error') }).start();
      let held = [];
      process.on('message', async ({ op, token }) => {
        if (op === 'exhaust') {
          try { for (;;) held.push(openSync('/dev/null', 'r')); } catch (err) { process.send({ op, code: err.code, held: held.length }); }
        } else if (op === 'release') {
          for (const fd of held.splice(0)) closeSync(fd);
          process.send({ op });
        } else if (op === 'verify') {
          process.send({ op, name: store.verify(token) ?? null });
        } else if (op === 'close') {
          await store.close();
          process.send({ op });
        }
      });
      process.send({ op: 'ready' });`;
    // A limit of its own, so that running out takes a thousand opens whatever the machine allows.
    const child = spawn('/bin/sh', ['-c', 'ulimit -n 1024 && exec "$@"', 'sh', process.execPath, '--input-type=module', '-e', script], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const logs: { log: string; msg: string; code?: string }[] = [];
    const answers: Record<string, unknown>[] = [];
    child.on('message', (m: Record<string, unknown>) => {
      if ('log' in m) logs.push(m as never);
      else answers.push(m);
    });
    const ask = async (op: string, token?: string) => {
      const before = answers.length;
      child.send({ op, token });
      await eventually(() => answers.length > before);
      return answers[before]!;
    };
    await eventually(() => answers.some((a) => a.op === 'ready'), 10_000);
    return { child, logs, ask, verify: async (token: string) => (await ask('verify', token)).name };
  }

  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill('SIGKILL');
    child = undefined;
  });

  it('reads it again by itself until it can, refusing every token meanwhile (EMFILE)', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'one']));
    const proc = await storeProcess(file);
    child = proc.child;
    expect(await proc.verify('one')).toBe('ci');

    expect(await proc.ask('exhaust')).toMatchObject({ code: 'EMFILE' });
    await writeFile(file, yaml(['ci', 'two']));
    await eventually(() => proc.logs.some((l) => l.msg === 'tokens file unreadable; no token is valid'));
    expect(proc.logs.find((l) => l.log === 'warn')).toMatchObject({ code: 'EMFILE' });
    // Long enough for a couple of retries, each failing: still closed, and logged once.
    await new Promise((r) => setTimeout(r, 2500));
    expect(await proc.verify('one')).toBeNull();
    expect(await proc.verify('two')).toBeNull();

    // Given back, the file unchanged since: the new token is read within a retry.
    await proc.ask('release');
    const released = Date.now();
    await eventually(async () => (await proc.verify('two')) === 'ci', 5000);
    expect(Date.now() - released).toBeLessThan(3000); // a retry a second, then the settle time
    expect(await proc.verify('one')).toBeNull();
    expect(proc.logs.filter((l) => l.log === 'warn')).toHaveLength(1);
    expect(proc.logs.filter((l) => l.msg === 'tokens file readable again')).toHaveLength(1);
    expect(proc.logs.filter((l) => l.log === 'error')).toEqual([]);
  }, 20_000);

  it('stops reading it again once closed', async () => {
    const file = path.join(dir, 'tokens.yaml');
    await writeFile(file, yaml(['ci', 'one']));
    const proc = await storeProcess(file);
    child = proc.child;
    await proc.ask('exhaust');
    await writeFile(file, yaml(['ci', 'two']));
    await eventually(() => proc.logs.some((l) => l.log === 'warn'));
    await proc.ask('close');
    await proc.ask('release');
    await new Promise((r) => setTimeout(r, 2500));
    expect(await proc.verify('two')).toBeNull();
    expect(proc.logs.filter((l) => l.msg === 'tokens loaded')).toHaveLength(1); // at start only
  }, 20_000);
});
