import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    alias: {
      'pg-datakit/duckdb': fileURLToPath(new URL('./src/duckdb.ts', import.meta.url)),
      'pg-datakit/parquet': fileURLToPath(new URL('./src/parquet.ts', import.meta.url)),
      'pg-datakit/testing': fileURLToPath(new URL('./src/testing/index.ts', import.meta.url)),
      'pg-datakit': fileURLToPath(new URL('./src/index.ts', import.meta.url)),
    },
  },
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', './test/support/summary-reporter.ts'],
    projects: [
      { extends: true, test: { name: 'utc', include: ['test/**/*.test.ts'], env: { TZ: 'UTC' } } },
      // Values must not depend on the process's time zone: the type tests run again in a zone with DST.
      {
        extends: true,
        test: {
          name: 'new-york',
          include: [
            'test/type-roundtrip.test.ts',
            'test/warehouse-file-types.test.ts',
            'test/copy-source.test.ts',
            'test/query-source.test.ts',
            'test/combination-matrix.test.ts',
          ],
          env: { TZ: 'America/New_York' },
        },
      },
    ],
  },
})
