import { defineConfig } from 'vitest/config';

// Each workspace member owns its vitest.config.ts (its own global setup: database, moto, ...).
export default defineConfig({
  test: {
    projects: ['{packages/*,services/*,deploy}/vitest.config.ts'],
    // Two test files at once. Vitest's default on 2 cores is one, and most files wait on child
    // processes, timeouts and outages, not on a core: the 996 tests took 581-622 s one file at a
    // time on this session's machine, and 373 and 383 s with two, all passing.
    maxWorkers: 2,
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
