import { describe, expect, it } from 'vitest'
import { bronzeMetadata, copySource, extract, parallelSource, partitionedSource, postgresSink, tableSource, type Source } from '../src/index.js'
import { tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('sink')

async function seedAccounts(table: string, rows: number) {
  await db.sourceSql(`drop table if exists ${table}`)
  await db.sourceSql(`create table ${table} (id int primary key, status text, balance numeric(12,2), note text)`)
  await db.sourceSql(`insert into ${table} select g, 'open', g * 1.25, case when g % 7 = 0 then null else 'n' || g end from generate_series(1, $1) g`, [rows])
}

/** Every bronze metadata column is filled, and `_bronze_loaded_at` has one value per run. */
async function metadataOf(table: string) {
  return db.warehouseSql(
    `select count(*)::int as n, count(_bronze_loaded_at)::int as loaded, count(_bronze_source)::int as source,
            count(_bronze_table)::int as "table", count(_bronze_extraction_type)::int as type,
            count(distinct _bronze_loaded_at)::int as runs from bronze.${table}`,
  )
}

describe('postgresSink merge on the COPY byte path with bronze metadata', () => {
  it('upserts copySource rows run after run: bronze equals the source and every metadata column is filled', async () => {
    await seedAccounts('accounts', 3000)
    const run = () =>
      extract({ from: copySource(db.source, { table: 'accounts' }), through: [bronzeMetadata()], to: postgresSink(db.warehouse, { mode: 'merge' }) })
    const first = await run()
    expect(first.path).toBe('copy-bytes')
    expect(first.rows).toBe(3000)
    await db.sourceSql(`update accounts set status = 'closed', balance = balance + 0.01 where id % 10 = 0`)
    await db.sourceSql(`insert into accounts select g, 'new', 1, null from generate_series(3001, 3100) g`)
    const second = await run()
    expect(second.rows).toBe(3100)
    expect(await tablesEqual(db.sourceUrl, 'accounts', db.warehouseUrl, 'bronze.br_accounts', ['id', 'status', 'balance', 'note'])).toEqual({
      missing: 0,
      extra: 0,
      sourceRows: 3100,
      targetRows: 3100,
    })
    // The second run touched every key, so every row carries its stamp.
    expect(await metadataOf('br_accounts')).toEqual([{ n: 3100, loaded: 3100, source: 3100, table: 3100, type: 3100, runs: 1 }])
    const [{ table, type }] = (await db.warehouseSql(`select distinct _bronze_table as table, _bronze_extraction_type as type from bronze.br_accounts`)) as [
      { table: string; type: string },
    ]
    expect({ table, type }).toEqual({ table: 'accounts', type: 'full' })
  })

  it('upserts parallelSource and partitionedSource rows the same way', async () => {
    await seedAccounts('wide_accounts', 4000)
    const parallel = () =>
      extract({
        from: parallelSource(db.source, { table: 'wide_accounts', concurrency: 2 }),
        through: [bronzeMetadata()],
        to: postgresSink(db.warehouse, { mode: 'merge' }),
      })
    expect((await parallel()).path).toBe('copy-bytes')
    await db.sourceSql(`update wide_accounts set status = 'closed' where id % 3 = 0`)
    await parallel()
    expect(await tablesEqual(db.sourceUrl, 'wide_accounts', db.warehouseUrl, 'bronze.br_wide_accounts', ['id', 'status', 'balance', 'note'])).toMatchObject({
      missing: 0,
      extra: 0,
      targetRows: 4000,
    })
    expect(await metadataOf('br_wide_accounts')).toEqual([{ n: 4000, loaded: 4000, source: 4000, table: 4000, type: 4000, runs: 1 }])

    await db.sourceSql(`drop table if exists ledger`)
    await db.sourceSql(`create table ledger (id int, at date not null, amount numeric(12,2), primary key (id, at)) partition by range (at)`)
    await db.sourceSql(`create table ledger_h1 partition of ledger for values from ('2024-01-01') to ('2024-07-01')`)
    await db.sourceSql(`create table ledger_h2 partition of ledger for values from ('2024-07-01') to ('2025-01-01')`)
    await db.sourceSql(`insert into ledger select g, date '2024-01-01' + (g % 366), g * 0.5 from generate_series(1, 2000) g`)
    const partitioned = () =>
      extract({
        from: partitionedSource(db.source, { table: 'ledger', concurrency: 2 }),
        through: [bronzeMetadata()],
        to: postgresSink(db.warehouse, { mode: 'merge' }),
      })
    expect((await partitioned()).path).toBe('copy-bytes')
    await db.sourceSql(`update ledger set amount = amount * 2 where id % 5 = 0`)
    await partitioned()
    expect(await tablesEqual(db.sourceUrl, 'ledger', db.warehouseUrl, 'bronze.br_ledger', ['id', 'at', 'amount'])).toMatchObject({
      missing: 0,
      extra: 0,
      targetRows: 2000,
    })
    expect(await metadataOf('br_ledger')).toEqual([{ n: 2000, loaded: 2000, source: 2000, table: 2000, type: 2000, runs: 1 }])
  })
})

/**
 * Sources whose shape() resolves for all of them at once: the runs then reach the sink together, as runs started by
 * one scheduler tick do on a busy machine.
 */
function startingTogether(count: number, make: () => Source): Source[] {
  let arrived = 0
  let release!: () => void
  const together = new Promise<void>((resolve) => (release = resolve))
  return Array.from({ length: count }, () => {
    const inner = make()
    return {
      name: inner.name,
      async shape() {
        const shape = await inner.shape()
        if (++arrived === count) release()
        await together
        return shape
      },
      batches: (ctx) => inner.batches(ctx),
      [Symbol.asyncIterator]: () => inner.batches(),
    }
  })
}

describe('postgresSink: runs at once into one new target', () => {
  for (const mode of ['append', 'merge', 'replace'] as const) {
    it(`${mode}: several first runs at once into a new schema and table all succeed`, async () => {
      const table = `racing_${mode}`
      await seedAccounts(table, 500)
      const schema = `race_${mode}`
      const sources = startingTogether(5, () => tableSource(db.source, { table }))
      const runs = sources.map((from) => extract({ from, through: [bronzeMetadata()], to: postgresSink(db.warehouse, { schema, mode }), retry: false }))
      const results = await Promise.allSettled(runs)
      expect(results.map((result) => (result.status === 'rejected' ? String(result.reason) : 'ok'))).toEqual(['ok', 'ok', 'ok', 'ok', 'ok'])
      expect(await db.warehouseSql(`select count(*)::int as n from ${schema}.br_${table}`)).toEqual([{ n: mode === 'append' ? 2500 : 500 }])
      expect(await tablesEqual(db.sourceUrl, table, db.warehouseUrl, `${schema}.br_${table}`, ['id', 'status', 'balance', 'note'])).toMatchObject({
        missing: 0,
      })
    })
  }

  it('several first runs at once into new tables of one new schema all succeed', async () => {
    await seedAccounts('racing_schema', 100)
    const tables = ['one', 'two', 'three', 'four']
    const sources = startingTogether(tables.length, () => tableSource(db.source, { table: 'racing_schema' }))
    const results = await Promise.allSettled(
      sources.map((from, index) =>
        extract({ from, to: postgresSink(db.warehouse, { schema: 'race_shared', table: tables[index]!, mode: 'append' }), retry: false }),
      ),
    )
    expect(results.map((result) => (result.status === 'rejected' ? String(result.reason) : 'ok'))).toEqual(['ok', 'ok', 'ok', 'ok'])
  })
})
