import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration and scenario tests start real servers; keep each file's servers to itself.
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
