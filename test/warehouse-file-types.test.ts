import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { bronzeMetadata, copySource, extract, tableSource, UnrepresentableValueError, type Source } from '../src/index.js'
import { duckdbSink } from '../src/duckdb.js'
import { parquetSink } from '../src/parquet.js'
import { parseArrayLiteral } from '../src/pg/array-literal.js'
import { useDatabases } from './support/fixtures.js'
import { duckdbRows } from './support/duckdb-read.js'
import { TYPE_COLUMNS } from './support/type-columns.js'

const db = useDatabases('filetypes')
const dir = mkdtempSync(join(tmpdir(), 'pgdk-file-types-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Columns a DuckDB list cannot hold: several dimensions, explicit bounds. Checked to fail with a typed error. */
const NOT_LISTS = ['c_int_2d', 'c_bounds_arr']
const COLUMNS = TYPE_COLUMNS.filter(([name]) => !NOT_LISTS.includes(name))

/**
 * The value DuckDB read back (as DuckDB's text: arrays as lists of texts, blobs as hex), in PostgreSQL's text form for
 * the column's type, so the two can be compared as strings.
 */
function asPostgresText(type: string, value: unknown): unknown {
  if (value === null) return null
  if (type.endsWith('[]')) return (value as unknown[]).map((element) => asPostgresText(type.slice(0, -2), element))
  // What DuckDB's JS values are for these columns: scalars (arrays are handled above).
  const scalar = value as string | number | bigint | boolean
  const text = String(scalar)
  switch (type) {
    case 'boolean':
      return text === 'true' ? 't' : 'f'
    case 'bytea':
      return `\\x${text.toLowerCase()}`
    case 'real':
    case 'double precision':
      return Number.isNaN(Number(text.replace('inf', 'Infinity'))) ? 'NaN' : Object.is(Number(text), -0) ? '-0' : Number(text.replace(/inf$/, 'Infinity'))
    case 'date':
    case 'timestamp':
    case 'timestamptz':
    case 'timestamp(3) with time zone':
      return text.replace(/^(\d+-\d+-\d+) \(BC\)(.*)$/, '$1$2 BC')
    case 'interval':
      return intervalUnits(text)
    default:
      return text
  }
}

/** Interval texts with units in one spelling: PostgreSQL says '-1 days' and '2 mons', DuckDB '-1 day' and '2 months'. */
const intervalUnits = (text: string) => text.replace(/ (year|mon|month|day)s?\b/g, (_, unit: string) => ` ${unit === 'month' ? 'mon' : unit}`)

/** The source's value, as text (arrays split into their elements' texts), in the same form. */
function sourceText(type: string, value: unknown): unknown {
  if (value === null) return null
  const text = value as string // the source's columns are read as text
  if (type.endsWith('[]')) return (parseArrayLiteral(text, (raw) => raw) as unknown[]).map((element) => sourceText(type.slice(0, -2), element))
  if (type === 'interval') return intervalUnits(text)
  if (type === 'real' || type === 'double precision') return text === 'NaN' ? 'NaN' : text === '-0' ? '-0' : Number(text)
  return text
}

/** DuckDB's text of each column: lists as lists of texts, blobs as hex. */
const duckSelect = (types: Map<string, string>) =>
  ['id', ...COLUMNS.map(([name]) => name)]
    .map((name) => {
      const duckType = types.get(name) ?? ''
      const column = `"${name}"`
      if (duckType === 'BLOB') return `hex(${column}) AS ${column}`
      if (duckType.endsWith('[]')) return `CAST(${column} AS VARCHAR[]) AS ${column}`
      return `CAST(${column} AS VARCHAR) AS ${column}`
    })
    .join(', ')

async function compare(read: (sql: string) => Promise<Record<string, unknown>[]>, from: string) {
  const described = await read(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM ${from})`)
  const types = new Map(described.map((row) => [String(row.column_name), String(row.column_type)]))
  const landed = await read(`SELECT ${duckSelect(types)} FROM ${from} ORDER BY id`)
  // Each value by its type's output function (a char(3)'s '::text' drops the padding the value has).
  // Read through the library's connection: its sessions run in UTC, as the sinks' DuckDB sessions do.
  const { rows: expected } = await db.source.query<Record<string, unknown>>(
    `select id::text as id, ${COLUMNS.map(([name]) => `case when ${name} is not null then format('%s', ${name}) end as ${name}`).join(', ')} from all_types order by id`,
  )
  expect(landed).toHaveLength(expected.length)
  let compared = 0
  for (const [index, row] of expected.entries()) {
    for (const [name, type] of COLUMNS) {
      const pgType = type === 'mood' || type === 'mood[]' ? (type.endsWith('[]') ? 'text[]' : 'text') : type === 'posint' ? 'integer' : type
      const got = asPostgresText(pgType.replace(/^(varchar|char)\(\d+\)$/, 'text'), landed[index]?.[name] ?? null)
      expect({ id: row.id, name, value: got }).toEqual({ id: row.id, name, value: sourceText(pgType, row[name]) })
      compared++
    }
  }
  return { types, compared }
}

const source = (fastPath: boolean): [Source, boolean] => [
  fastPath
    ? copySource(db.source, { table: 'all_types', columns: ['id', ...COLUMNS.map(([name]) => name)] })
    : tableSource(db.source, { table: 'all_types', columns: ['id', ...COLUMNS.map(([name]) => name)] }),
  fastPath,
]

describe('every type of the round-trip test through the DuckDB and Parquet sinks, read back by DuckDB', () => {
  it('creates the source table', async () => {
    await db.sourceSql(`create type mood as enum ('happy', 'sad')`)
    await db.sourceSql(`create domain posint as integer check (value > 0)`)
    await db.sourceSql(`create table all_types (id serial primary key, ${TYPE_COLUMNS.map(([name, type]) => `${name} ${type}`).join(', ')})`)
    const rows = Math.max(...TYPE_COLUMNS.map(([, , , values]) => values.length))
    for (let index = 0; index < rows; index++) {
      const names = TYPE_COLUMNS.filter(([, , , values]) => values[index] !== undefined)
      await db.sourceSql(
        `insert into all_types (${names.map(([name]) => name).join(', ')}) values (${names.map(([, type, , values]) => `(${values[index]})::${type}`).join(', ')})`,
      )
    }
    await db.sourceSql('insert into all_types default values')
  })

  it.each([
    ['the COPY byte path', true],
    ['decoded rows', false],
  ])('lands every value in DuckDB as the source has it, through %s', async (_, fastPath) => {
    const path = join(dir, `types-${fastPath}.duckdb`)
    const [from] = source(fastPath)
    const report = await extract({ from, through: [bronzeMetadata()], to: duckdbSink({ path }), fastPath })
    expect(report.path).toBe(fastPath ? 'copy-bytes' : 'rows')
    const { types, compared } = await compare((sql) => duckdbRows(path, sql), 'bronze.br_all_types')
    expect(compared).toBeGreaterThan(100)
    expect(
      Object.fromEntries(
        [...types].filter(([name]) =>
          ['c_int8', 'c_numeric', 'c_numeric_any', 'c_tstz', 'c_uuid', 'c_bytea', 'c_jsonb', 'c_int_arr', 'c_interval', 'c_mood', '_bronze_loaded_at'].includes(
            name,
          ),
        ),
      ),
    ).toEqual({
      c_int8: 'BIGINT',
      c_numeric: 'DECIMAL(38,10)',
      c_numeric_any: 'VARCHAR',
      c_tstz: 'TIMESTAMP WITH TIME ZONE',
      c_uuid: 'UUID',
      c_bytea: 'BLOB',
      c_jsonb: 'JSON',
      c_int_arr: 'INTEGER[]',
      c_interval: 'INTERVAL',
      c_mood: 'VARCHAR',
      _bronze_loaded_at: 'TIMESTAMP WITH TIME ZONE',
    })
  })

  it.each([
    ['the COPY byte path', true],
    ['decoded rows', false],
  ])('lands every value in Parquet as the source has it, through %s', async (_, fastPath) => {
    const lake = join(dir, `lake-${fastPath}`)
    const [from] = source(fastPath)
    await extract({ from, through: [bronzeMetadata()], to: parquetSink({ dir: lake }), fastPath })
    const { types, compared } = await compare((sql) => duckdbRows(':memory:', sql), `read_parquet('${lake}/br_all_types/**/*.parquet')`)
    expect(compared).toBeGreaterThan(100)
    // Parquet's INTERVAL has milliseconds and its TIME no offset: those stay PostgreSQL's text.
    expect([types.get('c_interval'), types.get('c_timetz'), types.get('c_tstz'), types.get('c_numeric')]).toEqual([
      'VARCHAR',
      'VARCHAR',
      'TIMESTAMP WITH TIME ZONE',
      'DECIMAL(38,10)',
    ])
  })

  it('sees a changed value (the comparison can fail)', async () => {
    const path = join(dir, 'types-true.duckdb')
    await duckdbRows(path, `UPDATE bronze.br_all_types SET c_numeric = c_numeric + 0.0000000001 WHERE id = 2`)
    await expect(compare((sql) => duckdbRows(path, sql), 'bronze.br_all_types')).rejects.toThrow(/c_numeric/)
  })

  it.each(NOT_LISTS)('refuses %s, which a list cannot hold, with a typed error naming the column and writing nothing', async (name) => {
    const path = join(dir, `refused-${name}.duckdb`)
    const error = await extract({ from: copySource(db.source, { table: 'all_types', columns: ['id', name] }), to: duckdbSink({ path }) }).catch(
      (caught: unknown) => caught,
    )
    expect(error).toBeInstanceOf(UnrepresentableValueError)
    expect((error as UnrepresentableValueError).context.column).toBe(name)
    expect(await duckdbRows(path, `SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = 'br_all_types'`)).toEqual([{ n: 0n }])
  })

  it('refuses NaN in a numeric(p,s), which a DECIMAL cannot hold', async () => {
    await db.sourceSql(`create table nan_numeric (id int, n numeric(10,2))`)
    await db.sourceSql(`insert into nan_numeric values (1, 1.5), (2, 'NaN')`)
    const error = await extract({ from: copySource(db.source, { table: 'nan_numeric' }), to: parquetSink({ dir: join(dir, 'nan') }) }).catch(
      (caught: unknown) => caught,
    )
    expect(error).toBeInstanceOf(UnrepresentableValueError)
    expect((error as Error).message).toMatch(/NaN cannot be stored in DECIMAL\(10,2\)/)
  })
})
