import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'imagelist',
    include: ['test/**/*.test.ts'],
    // Each file makes a database of its own (test/support/database.ts), so files run in parallel.
    testTimeout: 20_000,
    hookTimeout: 60_000,
  },
});
