import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// Checks the built package (dist/, made by `npm run build`, which CI runs before the tests); skipped when there is none.
const dist = fileURLToPath(new URL('../dist/', import.meta.url))
const built = existsSync(`${dist}index.cjs`) && existsSync(`${dist}duckdb.cjs`) && existsSync(`${dist}parquet.cjs`)
const require = createRequire(import.meta.url)

describe.skipIf(!built)('the built package', () => {
  it('gives the subpath entries the root entry\'s error classes in CommonJS, so instanceof holds across them', () => {
    const root = require(`${dist}index.cjs`) as typeof import('../src/index.js')
    const duckdb = require(`${dist}duckdb.cjs`) as typeof import('../src/duckdb.js')
    const parquet = require(`${dist}parquet.cjs`) as typeof import('../src/parquet.js')
    const thrown = (fn: () => unknown) => {
      try {
        fn()
      } catch (error) {
        return error
      }
      throw new Error('expected a throw')
    }
    for (const error of [thrown(() => duckdb.duckdbSink({ path: '' })), thrown(() => parquet.parquetSink({ dir: '' }))]) {
      expect(error).toBeInstanceOf(root.ConfigError)
      expect(error).toBeInstanceOf(root.DatakitError)
    }
  })
})
