import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// Checks the built package (dist/, made by `npm run build`, which CI runs before the tests); skipped when there is none.
const dist = fileURLToPath(new URL('../dist/', import.meta.url))
const built = ['index', 'duckdb', 'parquet', 'pg', 'cdc'].every((entry) => existsSync(`${dist}${entry}.cjs`))
const require = createRequire(import.meta.url)

describe.skipIf(!built)('the built package', () => {
  it("gives the subpath entries the root entry's error classes in CommonJS, so instanceof holds across them", () => {
    const root = require(`${dist}index.cjs`) as typeof import('../src/index.js')
    const duckdb = require(`${dist}duckdb.cjs`) as typeof import('../src/duckdb.js')
    const parquet = require(`${dist}parquet.cjs`) as typeof import('../src/parquet.js')
    const cdc = require(`${dist}cdc.cjs`) as typeof import('../src/cdc.js')
    const thrown = (fn: () => unknown) => {
      try {
        fn()
      } catch (error) {
        return error
      }
      throw new Error('expected a throw')
    }
    // A publication name START_REPLICATION cannot carry is refused before the (never opened) connection is used.
    const connection = root.connect('postgresql://nobody@localhost:1/none')
    const fromCdc = thrown(() => cdc.cdcSource(connection, { slot: 's', publication: 'not a name' }))
    for (const error of [thrown(() => duckdb.duckdbSink({ path: '' })), thrown(() => parquet.parquetSink({ dir: '' })), fromCdc]) {
      expect(error).toBeInstanceOf(root.ConfigError)
      expect(error).toBeInstanceOf(root.DatakitError)
    }
    // The classes pg-datakit/cdc re-exports are the root's own, not copies.
    expect(cdc.ConfigError).toBe(root.ConfigError)
    expect(cdc.SlotMissingError).toBe(root.SlotMissingError)
  })

  it('keeps the building blocks off the root entry and on pg-datakit/pg and pg-datakit/cdc, in ESM and CommonJS', async () => {
    const esm = {
      root: (await import(`${dist}index.js`)) as Record<string, unknown>,
      pg: (await import(`${dist}pg.js`)) as Record<string, unknown>,
      cdc: (await import(`${dist}cdc.js`)) as Record<string, unknown>,
    }
    const cjs = {
      root: require(`${dist}index.cjs`) as Record<string, unknown>,
      pg: require(`${dist}pg.cjs`) as Record<string, unknown>,
      cdc: require(`${dist}cdc.cjs`) as Record<string, unknown>,
    }
    for (const entries of [esm, cjs]) {
      for (const name of [
        'CopyTextDecoder',
        'appendToLines',
        'rowEncoder',
        'encodeRows',
        'valueToText',
        'typeParsersFor',
        'losslessTypes',
        'toJsonText',
        'quoteIdent',
        'parsePartitionBound',
      ]) {
        expect(entries.pg[name], name).toBeDefined()
        expect(entries.root[name], name).toBeUndefined()
      }
      for (const name of ['PgOutputDecoder', 'tupleReader', 'TransactionAssembler', 'lsnFromText', 'ensureSlot', 'slotStatus', 'cdcSource', 'changeRecords']) {
        expect(entries.cdc[name], name).toBeDefined()
        expect(entries.root[name], name).toBeUndefined()
      }
      for (const name of ['connect', 'extract', 'tableSource', 'copySource', 'captureChanges', 'postgresSink', 'memorySink', 'ConfigError']) {
        expect(entries.root[name], name).toBeDefined()
      }
    }
  })
})
