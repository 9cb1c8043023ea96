import { defineConfig } from 'vitest/config';

// Renders the Kustomize bases and overlays, validates them against the Kubernetes schemas, lints
// the Dockerfiles and workflows. Needs kubectl (kustomize v5+) and shellcheck: deploy/INSTALL-TOOLS.sh.
// The metrics test starts imagelist on a PostgreSQL server: DATABASE_URL, else the local server,
// decided as for imagelist's own tests.
export default defineConfig({
  test: {
    name: 'deploy',
    include: ['test/**/*.test.ts'],
    globalSetup: ['../services/imagelist/test/support/database-global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
