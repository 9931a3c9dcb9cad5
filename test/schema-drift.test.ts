import { describe, expect, it } from 'vitest'
import { bronzeMetadata, copySource, extract, postgresSink, SchemaDriftError, tableSource, type Source } from '../src/index.js'
import { tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('drift')

const COLUMNS = ['id', 'amount', 'qty', 'small', 'at', 'at_tz', 'name', 'prices']

/** The bronze column types, as format_type prints them. */
async function bronzeTypes(table: string): Promise<Record<string, string>> {
  const rows = (await db.warehouseSql(
    `select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute
      where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attnum`,
    [`bronze.${table}`],
  )) as { name: string; type: string }[]
  return Object.fromEntries(rows.map((row) => [row.name, row.type]))
}

const paths: [string, (table: string) => Source][] = [
  ['COPY bytes', (table) => copySource(db.source, { table })],
  ['decoded rows', (table) => tableSource(db.source, { table })],
]

describe('schema drift into an existing bronze table', () => {
  for (const mode of ['append', 'merge'] as const) {
    for (const [path, from] of paths) {
      it(`${mode} (${path}): a source column that got wider widens the bronze column in the run, and its values land exactly`, async () => {
        const table = `wide_${mode}_${path.startsWith('COPY') ? 'bytes' : 'rows'}`
        await db.sourceSql(`drop table if exists ${table}`)
        await db.sourceSql(
          `create table ${table} (id int primary key, amount numeric(12,2), qty int, small int2, at timestamp(0), at_tz timestamptz(3),
             name varchar(10), prices numeric(6,2)[])`,
        )
        await db.sourceSql(`insert into ${table} select g, g * 1.25, g, g, timestamp '2024-01-01' + g * interval '1 s', timestamptz '2024-01-01 00:00:00.123+00',
          'n' || g, array[g * 0.5, 1.25] from generate_series(1, 100) g`)
        const run = () => extract({ from: from(table), through: [bronzeMetadata()], to: postgresSink(db.warehouse, { mode }) })
        await run()

        await db.sourceSql(
          `alter table ${table} alter column id type bigint, alter column amount type numeric(12,4), alter column qty type numeric,
             alter column small type int8, alter column at type timestamp(6), alter column at_tz type timestamptz,
             alter column name type varchar(50), alter column prices type numeric(8,4)[]`,
        )
        await db.sourceSql(`update ${table} set amount = 1.2345, qty = 2.5, at = '2024-02-01 10:00:00.123456', name = repeat('x', 40) where id <= 10`)
        await db.sourceSql(
          `insert into ${table} values (9000000000, 99999999.9999, 2.5, 9000000000000, '2024-03-01 00:00:00.000001', '2024-03-01 00:00:00.654321+00',
             'a name that is longer than ten', array[9999.9999, 0.0001])`,
        )
        const report = await run()
        expect(report.rows).toBe(101)

        expect(await bronzeTypes(`br_${table}`)).toMatchObject({
          id: 'bigint',
          // numeric(12,4) has two integer digits fewer than numeric(12,2): the type that holds both.
          amount: 'numeric(14,4)',
          qty: 'numeric',
          small: 'bigint',
          at: 'timestamp(6) without time zone',
          at_tz: 'timestamp with time zone',
          name: 'character varying(50)',
          prices: 'numeric(8,4)[]',
        })
        // Compared as PostgreSQL's text of each value: 1.2345 is not 1.23, 2.5 is not 3, .123456 is not .
        const lastRun =
          mode === 'merge'
            ? `bronze.br_${table}`
            : `(select * from bronze.br_${table} where _bronze_loaded_at = (select max(_bronze_loaded_at) from bronze.br_${table})) last_run`
        expect(await tablesEqual(db.sourceUrl, table, db.warehouseUrl, lastRun, COLUMNS)).toEqual({ missing: 0, extra: 0, sourceRows: 101, targetRows: 101 })
        if (mode === 'append') {
          // The first run's rows are still there, widened without a change of value.
          expect(await db.warehouseSql(`select count(*)::int as n, min(amount)::text as amount from bronze.br_${table} where id = 1`)).toEqual([
            { n: 2, amount: '1.2345' },
          ])
        }
      })
    }
  }

  it('a source column that got narrower is written as it is: the bronze column keeps its wider type', async () => {
    await db.sourceSql(`drop table if exists narrower`)
    await db.sourceSql(`create table narrower (id int primary key, amount numeric(12,4), big bigint, label text)`)
    await db.sourceSql(`insert into narrower values (1, 1.2345, 5000000000, 'a')`)
    const run = () => extract({ from: copySource(db.source, { table: 'narrower' }), to: postgresSink(db.warehouse, { mode: 'merge' }) })
    await run()
    await db.sourceSql(`alter table narrower alter column amount type numeric(10,4), alter column big type int4 using 7, alter column label type varchar(5)`)
    await db.sourceSql(`insert into narrower values (2, 2.5, 8, 'bb')`)
    await run()
    expect(await bronzeTypes('br_narrower')).toEqual({ id: 'integer', amount: 'numeric(12,4)', big: 'bigint', label: 'text' })
    expect(await db.warehouseSql(`select id, amount::text, big::text, label from bronze.br_narrower order by id`)).toEqual([
      { id: 1, amount: '1.2345', big: '7', label: 'a' },
      { id: 2, amount: '2.5000', big: '8', label: 'bb' },
    ])
  })

  for (const mode of ['append', 'merge'] as const) {
    it(`${mode}: a change of kind fails with SchemaDriftError naming each column, and bronze is left untouched`, async () => {
      const table = `kind_${mode}`
      await db.sourceSql(`drop table if exists ${table}`)
      await db.sourceSql(`create table ${table} (id int primary key, code text, amount numeric(12,4), ok varchar(5))`)
      await db.sourceSql(`insert into ${table} select g, g::text, g * 0.0001, 'x' from generate_series(1, 50) g`)
      const run = () => extract({ from: copySource(db.source, { table }), through: [bronzeMetadata()], to: postgresSink(db.warehouse, { mode }) })
      await run()
      const before = await db.warehouseSql(`select * from bronze.br_${table} order by id`)
      const typesBefore = await bronzeTypes(`br_${table}`)

      // code: text -> int and amount: numeric -> double precision are changes of kind. ok: a widening, and extra: a
      // new column; neither is applied, since the run fails first.
      await db.sourceSql(
        `alter table ${table} alter column code type int using code::int, alter column amount type double precision,
           alter column ok type varchar(20), add column extra text`,
      )
      await db.sourceSql(`update ${table} set amount = 0.1, ok = 'longer than five'`)
      const failure = await run().catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(SchemaDriftError)
      const drift = failure as SchemaDriftError
      expect(drift.code).toBe('SCHEMA_DRIFT')
      expect(drift.step).toBe('sink')
      expect(drift.retryable).toBe(false)
      expect(drift.columns).toEqual([
        { column: 'code', bronzeType: 'text', sourceType: 'integer' },
        { column: 'amount', bronzeType: 'numeric(12,4)', sourceType: 'double precision' },
      ])
      expect(drift.context).toMatchObject({ schema: 'bronze', table: `br_${table}`, mode })
      expect(drift.message).toMatch(
        /"code" is text in bronze\.br_kind_\w+ and integer in the source; "amount" is numeric\(12,4\) in .* and double precision in the source/,
      )
      expect(drift.message).toMatch(/Nothing was written\. Alter the bronze column/)

      expect(await bronzeTypes(`br_${table}`)).toEqual(typesBefore)
      expect(await db.warehouseSql(`select * from bronze.br_${table} order by id`)).toEqual(before)
      expect(await db.warehouseSql(`select relname from pg_class where relname like 'pgdk_stage_%'`)).toEqual([])
    })
  }

  it('a widening PostgreSQL refuses (a view on the column) fails with SchemaDriftError saying what to do, and bronze is left untouched', async () => {
    await db.sourceSql(`drop table if exists viewed`)
    await db.sourceSql(`create table viewed (id int primary key, amount numeric(12,2))`)
    await db.sourceSql(`insert into viewed values (1, 1.25)`)
    const run = () => extract({ from: copySource(db.source, { table: 'viewed' }), to: postgresSink(db.warehouse, { mode: 'append' }) })
    await run()
    await db.warehouseSql(`create view bronze.viewed_amounts as select amount from bronze.br_viewed`)
    await db.sourceSql(`alter table viewed alter column amount type numeric(14,4)`)
    await db.sourceSql(`insert into viewed values (2, 1.2345)`)
    const failure = await run().catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(SchemaDriftError)
    expect((failure as SchemaDriftError).columns).toEqual([{ column: 'amount', bronzeType: 'numeric(12,2)', sourceType: 'numeric(14,4)' }])
    expect((failure as Error).message).toMatch(/must widen "amount" from numeric\(12,2\) to numeric\(14,4\).*view or rule.*Drop the views or rules/)
    expect(await bronzeTypes('br_viewed')).toEqual({ id: 'integer', amount: 'numeric(12,2)' })
    expect(await db.warehouseSql(`select id, amount::text from bronze.br_viewed`)).toEqual([{ id: 1, amount: '1.25' }])
  })

  it('a column dropped at the source stays in bronze: new rows get NULL there, and merge leaves it as it was in rows it updates', async () => {
    for (const mode of ['append', 'merge'] as const) {
      const table = `dropped_${mode}`
      await db.sourceSql(`drop table if exists ${table}`)
      await db.sourceSql(`create table ${table} (id int primary key, status text, legacy text)`)
      await db.sourceSql(`insert into ${table} values (1, 'open', 'old')`)
      const run = () => extract({ from: copySource(db.source, { table }), through: [bronzeMetadata()], to: postgresSink(db.warehouse, { mode }) })
      await run()
      await db.sourceSql(`alter table ${table} drop column legacy`)
      await db.sourceSql(`update ${table} set status = 'paid'`)
      await db.sourceSql(`insert into ${table} values (2, 'new')`)
      await run()
      const rows = await db.warehouseSql(`select id, status, legacy from bronze.br_${table} order by id, status`)
      expect(rows).toEqual(
        mode === 'append'
          ? [
              { id: 1, status: 'open', legacy: 'old' },
              { id: 1, status: 'paid', legacy: null },
              { id: 2, status: 'new', legacy: null },
            ]
          : [
              { id: 1, status: 'paid', legacy: 'old' },
              { id: 2, status: 'new', legacy: null },
            ],
      )
    }
  })
})
