import { defineConfig } from 'tsup'

export default defineConfig({
  entry: { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts', duckdb: 'src/duckdb.ts', parquet: 'src/parquet.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  treeshake: true,
  external: ['pg', 'kysely', 'pg-cursor', 'pg-copy-streams', 'zod', '@testcontainers/postgresql', '@duckdb/node-api'],
})
