import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'imagelist',
    include: ['test/**/*.test.ts'],
    // DATABASE_URL, or the local PostgreSQL server when one answers (test/support/database.ts decides the rest)
    globalSetup: ['test/support/database-global-setup.ts'],
    // Each file makes a database of its own (test/support/database.ts), so files run in parallel.
    testTimeout: 20_000,
    hookTimeout: 60_000,
  },
});
