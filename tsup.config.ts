import { defineConfig } from 'tsup'

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'testing/index': 'src/testing/index.ts',
    duckdb: 'src/duckdb.ts',
    parquet: 'src/parquet.ts',
    pg: 'src/pg.ts',
    cdc: 'src/cdc.ts',
    bullmq: 'src/bullmq.ts',
    cli: 'src/cli/index.ts',
  },
  format: ['esm', 'cjs'],
  // Shared code (the error classes, above all) goes into chunks that every entry point loads, in CommonJS too
  // (tsup splits only ESM by default): without it, `require('pg-datakit/duckdb')` carried its own copy of each class and
  // its errors failed `instanceof` against those of `require('pg-datakit')`. test/package-entries.test.ts checks it.
  splitting: true,
  dts: true,
  // No source maps: the output is unminified and keeps the source's names and layout, so stack traces read as they
  // are; maps with the sources inside were ~970 kB of the tarball, and maps without them point at files not shipped.
  sourcemap: false,
  clean: true,
  target: 'node20',
  treeshake: true,
  external: [
    'pg',
    'kysely',
    'pg-cursor',
    'pg-copy-streams',
    'pg-connection-string',
    'zod',
    '@testcontainers/postgresql',
    '@duckdb/node-api',
    'bullmq',
    'ioredis',
  ],
})
