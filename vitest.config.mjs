import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.mjs'],
    include: ['test/**/*.test.{ts,mjs}'],
    // Child processes, not threads: the native addon and the Kerberos environment variables are
    // per process.
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.mjs'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
