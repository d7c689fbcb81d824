import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A test CA trusted by every worker (NODE_EXTRA_CA_CERTS), for the emulators' TLS port.
    globalSetup: ['test/support/tlsGlobalSetup.ts'],
    // Integration and scenario tests start real servers; keep each file's servers to itself.
    pool: 'forks',
    // At least two files at a time. Vitest's default is one fewer than the cores, so a 2-core machine ran one file
    // at a time, and most files spend their time waiting on sockets and child processes, not computing. On this
    // 2-core machine the whole run went from 397 s to 240 s.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
