import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: { name: 'http-common', include: ['test/**/*.test.ts'] },
});
