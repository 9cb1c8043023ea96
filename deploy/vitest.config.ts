import { defineConfig } from 'vitest/config';

// Renders the Kustomize bases and overlays, validates them against the Kubernetes schemas, lints
// the Dockerfiles and workflows. Needs kubectl (kustomize v5+) and shellcheck: deploy/INSTALL-TOOLS.sh.
export default defineConfig({
  test: { name: 'deploy', include: ['test/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 30_000 },
});
