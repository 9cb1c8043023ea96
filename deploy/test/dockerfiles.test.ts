import { validate } from 'dockerfile-utils';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './support/kustomize.js';

/** A diagnostic's text (dockerfile-utils types it as a string or LSP markup). */
const messageOf = (d: ReturnType<typeof validate>[number]): string => (typeof d.message === 'string' ? d.message : d.message.value);

// No Docker engine where these tests run: the Dockerfiles are linted (dockerfile-utils, the
// checker behind VS Code's Docker support) and checked against the workspace here; the CI
// workflows build and start the images.

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** Instructions of a Dockerfile, continuation lines joined, comments dropped. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let current: Instruction | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!current && (line === '' || line.startsWith('#'))) return;
    if (current) {
      if (line.startsWith('#')) return;
      current.args += ` ${line.replace(/\\$/, '').trim()}`;
    } else {
      const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line)!;
      current = { keyword: keyword!.toUpperCase(), args: args!.replace(/\\$/, '').trim(), line: i + 1 };
    }
    if (!line.endsWith('\\')) {
      out.push(current);
      current = undefined;
    }
  });
  return out;
}

/** Instructions per stage; [0] holds the global ARGs before the first FROM. */
function stages(list: Instruction[]): Instruction[][] {
  const result: Instruction[][] = [[]];
  for (const ins of list) {
    if (ins.keyword === 'FROM') result.push([]);
    result.at(-1)!.push(ins);
  }
  return result;
}

const readJson = (file: string) => JSON.parse(readFileSync(path.join(ROOT, file), 'utf8'));
const dockerignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

/** Whether .dockerignore leaves `file` out of the build context (Go filepath.Match with `**`). */
function ignored(file: string): boolean {
  return dockerignore.some((pattern) => {
    const re = pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*\*\//g, '\uE000') // a private-use placeholder, no glob contains it
      .replace(/\*/g, '[^/]*')
      .replace(/\uE000/g, '(.*/)?');
    return new RegExp(`^${re}(/.*)?$`).test(file);
  });
}

/** Every workspace package a package depends on, transitively, as directories. */
function workspaceDeps(dir: string, seen = new Set<string>()): Set<string> {
  const pkg = readJson(`${dir}/package.json`);
  for (const [name, range] of Object.entries<string>(pkg.dependencies ?? {})) {
    if (!range.startsWith('workspace:')) continue;
    const depDir = ['packages', 'services']
      .map((d) => `${d}/${name.split('/')[1]}`)
      .find((d) => existsSync(path.join(ROOT, d, 'package.json')) && readJson(`${d}/package.json`).name === name);
    if (!depDir) throw new Error(`${dir}: no workspace package ${name}`);
    if (!seen.has(depDir)) {
      seen.add(depDir);
      workspaceDeps(depDir, seen);
    }
  }
  return seen;
}

describe.each([
  ['imagelist', 8000],
  ['ecr-api', 8080],
] as const)('services/%s/Dockerfile', (svc, port) => {
  const file = `services/${svc}/Dockerfile`;
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const [globals, build, final, ...more] = stages(instructions(text));
  const runs = (stage: Instruction[]) =>
    stage
      .filter((i) => i.keyword === 'RUN')
      .map((i) => i.args)
      .join('\n');

  it('passes dockerfile-utils with no finding', () => {
    expect(validate(text).map((d) => `${file}:${d.range.start.line + 1}: ${messageOf(d)}`)).toEqual([]);
  });

  it('has two stages from a Node 20 slim image: build, and the runtime', () => {
    expect(more).toEqual([]);
    expect(globals!.map((i) => i.args)).toEqual([expect.stringMatching(/^NODE_IMAGE=node:20(\.\d+)*-bookworm-slim$/)]);
    expect(build![0]!.args).toBe('${NODE_IMAGE} AS build');
    expect(final![0]!.args).toBe('${NODE_IMAGE}');
  });

  it('builds with corepack pnpm from the lockfile, then keeps production dependencies only', () => {
    const name = readJson(`services/${svc}/package.json`).name;
    const script = runs(build!);
    expect(script).toMatch(/corepack enable/);
    expect(script).toMatch(/pnpm fetch/);
    expect(script).toMatch(/pnpm install --offline --frozen-lockfile/);
    expect(script).toContain(`pnpm exec tsc -b services/${svc}`);
    expect(script).toContain(`pnpm --filter ${name} deploy --prod --offline /out`);
    // The runtime stage takes the deployed folder and nothing else.
    const copies = final!.filter((i) => i.keyword === 'COPY').map((i) => i.args);
    expect(copies).toEqual(['--from=build /out ./']);
  });

  it('copies everything the build needs, and .dockerignore keeps none of it out', () => {
    const sources = build!.filter((i) => i.keyword === 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    for (const source of sources) {
      expect(existsSync(path.join(ROOT, source)), source).toBe(true);
      expect(ignored(source), source).toBe(false);
    }
    // The service's workspace dependencies all live under a copied folder.
    for (const dep of workspaceDeps(`services/${svc}`))
      expect(
        sources.some((s) => dep === s || dep.startsWith(`${s}/`)),
        dep,
      ).toBe(true);
    // Sources in, build output and dependencies out.
    for (const f of [`services/${svc}/src/server.ts`, `services/${svc}/package.json`, 'packages/auth/src/index.ts', 'tsconfig.base.json'])
      expect(ignored(f), f).toBe(false);
    if (svc === 'imagelist') expect(ignored('services/imagelist/migrations/001_images.sql')).toBe(false);
    for (const f of [
      `services/${svc}/node_modules/x`,
      `services/${svc}/dist/server.js`,
      'packages/auth/dist/index.js',
      'node_modules/.pnpm/x',
      '.git/HEAD',
      `services/${svc}/test/app.test.ts`,
    ]) {
      expect(ignored(f), f).toBe(true);
    }
  });

  it('runs node dist/server.js as uid 10001, without HEALTHCHECK, exposing the default port', () => {
    expect(instructions(text).some((i) => i.keyword === 'HEALTHCHECK')).toBe(false);
    const keywords = final!.map((i) => i.keyword);
    expect(final!.find((i) => i.keyword === 'USER')?.args).toBe('10001:10001');
    expect(keywords.lastIndexOf('USER')).toBeGreaterThan(keywords.lastIndexOf('COPY'));
    expect(keywords.lastIndexOf('USER')).toBeGreaterThan(keywords.lastIndexOf('RUN'));
    expect(final!.find((i) => i.keyword === 'ENTRYPOINT')?.args).toBe('["node", "dist/server.js"]');
    expect(readJson(`services/${svc}/package.json`).bin).toEqual({ [svc]: './dist/server.js' });
    expect(final!.find((i) => i.keyword === 'EXPOSE')?.args).toBe(String(port));
  });

  it('bakes APP_VERSION, GIT_COMMIT and BUILD_TIME in from build arguments', () => {
    const args = final!.filter((i) => i.keyword === 'ARG').map((i) => i.args.split('=')[0]);
    expect(args).toEqual(['APP_VERSION', 'GIT_COMMIT', 'BUILD_TIME']);
    const env = final!
      .filter((i) => i.keyword === 'ENV')
      .map((i) => i.args)
      .join(' ');
    for (const name of args) expect(env).toContain(`${name}=\${${name}}`);
    expect(env).toContain('NODE_ENV=production');
    // Empty by default, so that a local build reports package.json's version.
    expect(final!.find((i) => i.args.startsWith('APP_VERSION='))?.args).toBe('APP_VERSION=""');
  });
});

describe('dockerfile-utils', () => {
  it('rejects a broken Dockerfile', () => {
    const findings = validate('FROM node:20\nEXPOSE http\nCOPY onlyone\nUSER\nHEALTHCHECK CMD true\nHEALTHCHECK NONE\n').map((d) =>
      messageOf(d),
    );
    expect(findings.length).toBeGreaterThanOrEqual(4);
    expect(findings.join('\n')).toMatch(/Invalid containerPort: http/);
  });
});
