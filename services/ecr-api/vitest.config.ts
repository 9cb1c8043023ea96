import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    name: 'ecr-api',
    include: ['test/**/*.test.ts'],
    // Starts moto_server on a free loopback port and provides its URL as `motoEndpoint`.
    // Test files share it: each uses accounts of its own (moto keeps ECR state per account).
    globalSetup: ['test/support/moto-global-setup.ts'],
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
});
