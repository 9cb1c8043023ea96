import { defineConfig } from 'vitest/config';

// Each workspace member owns its vitest.config.ts (its own global setup: database, moto, ...).
export default defineConfig({
  test: {
    projects: ['{packages/*,services/*,deploy}/vitest.config.ts'],
    reporters: ['default', './scripts/summary-reporter.ts'],
    coverage: {
      provider: 'v8',
      // what the test processes run; services started as child processes are not counted
      include: ['packages/*/src/**/*.ts', 'services/*/src/**/*.ts'],
      reporter: ['text', 'json-summary'],
      reportsDirectory: 'coverage',
    },
  },
});
