import { defineConfig } from 'vitest/config';

// The type tests of the public .d.ts in dist/: checked by tsc, never run, so no realm.
export default defineConfig({
  test: {
    include: [],
    typecheck: {
      enabled: true,
      only: true,
      include: ['test/types/*.test-d.ts'],
      tsconfig: 'test/types/tsconfig.json',
    },
    reporters: ['default', './test/summary-reporter.mjs'],
  },
});
