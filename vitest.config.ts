import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A test CA trusted by every worker (NODE_EXTRA_CA_CERTS), for the emulators' TLS port.
    globalSetup: ['test/support/tlsGlobalSetup.ts'],
    // Integration and scenario tests start real servers; keep each file's servers to itself.
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
