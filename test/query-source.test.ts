import { describe, expect, expectTypeOf, it } from 'vitest'
import { sql } from 'kysely'
import { bronzeMetadata, ConfigError, extract, memorySink, postgresSink, querySource } from '../src/index.js'
import { useDatabases } from './support/fixtures.js'

interface DB {
  customers: { id: number; name: string; balance: string; joined_at: string; visits: bigint }
}

const db = useDatabases('query')

describe('querySource', () => {
  it('reads a Kysely query, rows typed by the query', async () => {
    await db.sourceSql(`create table customers (id int primary key, name text, balance numeric(10,2), joined_at timestamptz, visits bigint)`)
    await db.sourceSql(
      `insert into customers select g, 'c' || g, g * 10.5, '2024-01-01 00:00:00.000001+00'::timestamptz + g * interval '1 day', g * 1000000000000
         from generate_series(1, 50) g`,
    )
    const kysely = db.source.kysely<DB>()
    const query = kysely.selectFrom('customers').select(['id', 'name', 'balance', 'joined_at', 'visits']).where('id', '<=', 2).orderBy('id')
    const source = querySource(db.source, query, { name: 'first_customers' })
    const rows = []
    for await (const batch of source) {
      expectTypeOf(batch.rows[0]!).toEqualTypeOf<{ id: number; name: string; balance: string; joined_at: string; visits: bigint }>()
      rows.push(...batch.rows)
    }
    expect(rows).toEqual([
      { id: 1, name: 'c1', balance: '10.50', joined_at: '2024-01-02 00:00:00.000001+00', visits: 1000000000000n },
      { id: 2, name: 'c2', balance: '21.00', joined_at: '2024-01-03 00:00:00.000001+00', visits: 2000000000000n },
    ])
  })

  it('lands a query in bronze.br_<name> with the query column types', async () => {
    const kysely = db.source.kysely<DB>()
    const query = kysely
      .selectFrom('customers')
      .select(['id', 'balance', sql<string>`balance * 2`.as('doubled'), sql<string[]>`array[name, 'x']`.as('tags')])
      .where('balance', '>', '100')
    const report = await extract({ from: querySource(db.source, query, { name: 'rich' }), through: [bronzeMetadata()], to: postgresSink(db.warehouse) })
    expect(report.rows).toBe(41)
    const types = await db.warehouseSql(
      `select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute
        where attrelid = 'bronze.br_rich'::regclass and attnum > 0 order by attnum`,
    )
    expect(types.slice(0, 4)).toEqual([
      { name: 'id', type: 'integer' },
      { name: 'balance', type: 'numeric(10,2)' },
      { name: 'doubled', type: 'numeric' },
      { name: 'tags', type: 'text[]' },
    ])
    expect(await db.warehouseSql(`select _bronze_table, _bronze_extraction_type from bronze.br_rich limit 1`)).toEqual([
      { _bronze_table: 'rich', _bronze_extraction_type: 'query' },
    ])
  })

  it('refuses a query that returns the same column name twice', async () => {
    const kysely = db.source.kysely<DB>()
    const query = kysely.selectFrom('customers').select(['id', sql<number>`id + 1`.as('id')])
    await expect(extract({ from: querySource(db.source, query), to: memorySink() })).rejects.toBeInstanceOf(ConfigError)
  })
})
