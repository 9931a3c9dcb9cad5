import { describe, expect, it } from 'vitest'
import {
  bronzeMetadata,
  copySource,
  expandArrays,
  extract,
  incrementalSource,
  memoryCheckpoints,
  memorySink,
  parallelSource,
  parseJsonb,
  partitionedSource,
  postgresSink,
  tableSource,
  type Row,
  type Source,
  type Transform,
} from '../src/index.js'
import { CopyTextDecoder, rowEncoder, type Column } from '../src/pg.js'
import { rowBuilder } from '../src/pg/row-builder.js'
import { tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('names')

/**
 * Column names are data from the source: names JavaScript gives a meaning to on every plain object
 * (`__proto__`, the names of Object.prototype's members) must land like any other.
 */
const COLUMNS: [name: string, type: string][] = [
  ['id', 'int primary key'],
  ['__proto__', 'text'],
  ['constructor', 'int'],
  ['toString', 'jsonb'],
  ['hasOwnProperty', 'text'],
  ['valueOf', 'int'],
  ['a "quoted". spaced name', 'text'],
]
const NAMES = COLUMNS.map(([name]) => name)
const quote = (name: string) => `"${name.replace(/"/g, '""')}"`

/** The rows as a JS reader of the source would expect them, keyed by column. */
const EXPECTED: unknown[][] = [
  [1, 'proto text', 7, '{"a": 1}', 'own', 42, 'spaced'],
  [2, null, null, null, null, null, null],
  [3, '{}', -1, '[]', '', 0, ''],
  [4, 'tab\there', 2147483647, '{"__proto__": {"x": 1}}', 'back\\slash', -5, 'line\nbreak'],
]

async function seed(table: string, cursor = false) {
  await db.sourceSql(`drop table if exists ${table}`)
  await db.sourceSql(`create table ${table} (${COLUMNS.map(([name, type]) => `${quote(name)} ${type}`).join(', ')}${cursor ? ', updated_at timestamptz' : ''})`)
  for (const row of EXPECTED) {
    await db.sourceSql(
      `insert into ${table} (${NAMES.map(quote).join(', ')}${cursor ? ', updated_at' : ''})
       values (${row.map((_, index) => `$${index + 1}`).join(', ')}${cursor ? `, '2024-01-01'::timestamptz + $1::int * interval '1 hour'` : ''})`,
      row,
    )
  }
}

/** Checks a row carries exactly the source's values under every name, and inherits nothing a name could hit. */
function expectSafeRow(row: Row, expected: readonly unknown[]): void {
  for (const [index, name] of NAMES.entries()) {
    expect(Object.hasOwn(row, name), name).toBe(true)
    const value = Object.getOwnPropertyDescriptor(row, name)?.value
    expect(value, name).toEqual(name === 'toString' && expected[index] !== null ? JSON.parse(JSON.stringify(expected[index])) : expected[index])
  }
  // Nothing inherited: a name the source does not have reads as undefined.
  for (const name of ['isPrototypeOf', 'propertyIsEnumerable', 'toLocaleString', '__defineGetter__']) {
    expect((row as Record<string, unknown>)[name], name).toBeUndefined()
  }
}

const byId = (rows: readonly Row[]) =>
  [...rows].sort((a, b) => Number(Object.getOwnPropertyDescriptor(a, 'id')?.value) - Number(Object.getOwnPropertyDescriptor(b, 'id')?.value))

function sources(table: string): [string, () => Source][] {
  return [
    ['tableSource', () => tableSource(db.source, { table })],
    ['copySource (decoded)', () => copySource(db.source, { table })],
    ['parallelSource (decoded)', () => parallelSource(db.source, { table, concurrency: 2 })],
  ]
}

describe('columns named like members of Object.prototype', () => {
  for (const withMetadata of [false, true]) {
    const through: () => Transform[] = () => (withMetadata ? [bronzeMetadata()] : [])
    const label = withMetadata ? 'with bronzeMetadata' : 'without transforms'

    for (const [sourceName, make] of sources('weird')) {
      it(`lands __proto__, constructor, toString, ... exactly in bronze (${sourceName}, ${label})`, async () => {
        await seed('weird')
        const target = `br_weird_${sourceName.split(' ')[0]}_${withMetadata ? 'meta' : 'plain'}`.toLowerCase()
        await db.warehouseSql(`drop table if exists bronze.${target}`)
        const report = await extract({
          from: make(),
          through: through(),
          to: postgresSink(db.warehouse, { mode: 'append', table: target }),
          fastPath: false,
        })
        expect(report.path).toBe('rows')
        expect(report.rows).toBe(EXPECTED.length)
        expect(await tablesEqual(db.sourceUrl, 'weird', db.warehouseUrl, `bronze.${target}`, NAMES)).toEqual({
          missing: 0,
          extra: 0,
          sourceRows: EXPECTED.length,
          targetRows: EXPECTED.length,
        })
        // NULLs stay NULL (not '{}' from Object.prototype) in every one of these columns.
        const nulls = await db.warehouseSql(`select id, num_nulls(${NAMES.slice(1).map(quote).join(', ')}) as n from bronze.${target} order by id`)
        expect(nulls).toEqual([
          { id: 1, n: 0 },
          { id: 2, n: NAMES.length - 1 },
          { id: 3, n: 0 },
          { id: 4, n: 0 },
        ])
      })

      it(`hands memorySink rows keyed safely by every name (${sourceName}, ${label})`, async () => {
        await seed('weird')
        const sink = memorySink()
        await extract({ from: make(), through: through(), to: sink, fastPath: false })
        const rows = byId(sink.rows)
        expect(rows).toHaveLength(EXPECTED.length)
        rows.forEach((row, index) => expectSafeRow(row, EXPECTED[index] as unknown[]))
      })
    }
  }

  it('lands them exactly through partitionedSource (decoded), with bronzeMetadata, and hands memorySink safe rows', async () => {
    await db.sourceSql('drop table if exists weird_part')
    await db.sourceSql(
      `create table weird_part (${COLUMNS.map(([name, type]) => `${quote(name)} ${type.replace(' primary key', '')}`).join(', ')}) partition by range (id)`,
    )
    await db.sourceSql(`create table weird_part_low partition of weird_part for values from (minvalue) to (3)`)
    await db.sourceSql(`create table weird_part_high partition of weird_part for values from (3) to (maxvalue)`)
    for (const row of EXPECTED) {
      await db.sourceSql(`insert into weird_part (${NAMES.map(quote).join(', ')}) values (${row.map((_, index) => `$${index + 1}`).join(', ')})`, row)
    }
    const source = () => partitionedSource(db.source, { table: 'weird_part', concurrency: 2 })
    await extract({ from: source(), through: [bronzeMetadata()], to: postgresSink(db.warehouse, { mode: 'append' }), fastPath: false })
    expect(await tablesEqual(db.sourceUrl, 'weird_part', db.warehouseUrl, 'bronze.br_weird_part', NAMES)).toMatchObject({ missing: 0, extra: 0, targetRows: 4 })
    const sink = memorySink()
    await extract({ from: source(), through: [bronzeMetadata()], to: sink, fastPath: false })
    byId(sink.rows).forEach((row, index) => expectSafeRow(row, EXPECTED[index] as unknown[]))
  })

  it('lands them exactly through incrementalSource, with bronzeMetadata', async () => {
    await seed('weird_inc', true)
    const source = incrementalSource(db.source, { table: 'weird_inc', cursorColumn: 'updated_at', checkpoints: memoryCheckpoints() })
    await extract({ from: source, through: [bronzeMetadata()], to: postgresSink(db.warehouse, { mode: 'append' }) })
    expect(await tablesEqual(db.sourceUrl, 'weird_inc', db.warehouseUrl, 'bronze.br_weird_inc', NAMES)).toMatchObject({ missing: 0, extra: 0 })

    await db.sourceSql(`update weird_inc set updated_at = updated_at + interval '1 day'`)
    const sink = memorySink()
    await extract({ from: source, through: [bronzeMetadata()], to: sink })
    byId(sink.rows).forEach((row, index) => expectSafeRow(row, EXPECTED[index] as unknown[]))
  })

  // The cursor sources read with cursorRows() (rowMode 'array', rows keyed by pg-datakit): pg would key cursor rows
  // itself, on a plain object. This is the source on its own, without the steps downstream that copy rows safely.
  it('hands rows that inherit nothing straight from the cursor sources (for await without extract)', async () => {
    await seed('weird')
    await seed('weird_inc', true)
    const sources: Source[] = [
      tableSource(db.source, { table: 'weird' }),
      incrementalSource(db.source, { table: 'weird_inc', cursorColumn: 'updated_at', checkpoints: memoryCheckpoints() }),
    ]
    for (const source of sources) {
      const rows: Row[] = []
      for await (const batch of source) rows.push(...batch.rows)
      byId(rows).forEach((row, index) => expectSafeRow(row, EXPECTED[index] as unknown[]))
    }
  })

  it('keeps them through parseJsonb and expandArrays, into memorySink and postgresSink', async () => {
    await db.sourceSql(`drop table if exists weird_json`)
    await db.sourceSql(`create table weird_json (id int primary key, "__proto__" jsonb, "constructor" int[], "valueOf" text)`)
    await db.sourceSql(`insert into weird_json values (1, '{"a": [1, 2]}', '{1,2}', 'v'), (2, null, null, null), (3, '"s"', '{}', '')`)
    const through = () => [parseJsonb(), expandArrays(), bronzeMetadata()]
    for (const make of [() => tableSource(db.source, { table: 'weird_json' }), () => copySource(db.source, { table: 'weird_json' })]) {
      const sink = memorySink()
      await extract({ from: make(), through: through(), to: sink, fastPath: false })
      const rows = byId(sink.rows)
      const own = (row: Row, name: string) => Object.getOwnPropertyDescriptor(row, name)?.value
      expect(rows.map((row) => own(row, '__proto__'))).toEqual(['{"a": [1, 2]}', null, '"s"'])
      expect(rows.map((row) => own(row, '__proto___parsed'))).toEqual([{ a: [1, 2] }, null, 's'])
      expect(rows.map((row) => own(row, 'constructor'))).toEqual([[1, 2], null, []])
      expect(rows.map((row) => own(row, 'constructor_expanded'))).toEqual([[1, 2], [], []])
      expect(rows.map((row) => own(row, 'valueOf'))).toEqual(['v', null, ''])

      await db.warehouseSql('drop table if exists bronze.br_weird_json')
      await extract({ from: make(), through: through(), to: postgresSink(db.warehouse), fastPath: false })
      const landed = await db.warehouseSql(
        `select id, "__proto__"::text as p, "__proto___parsed"::text as parsed, "constructor"::text as c,
                "constructor_expanded"::text as e, "valueOf" as v from bronze.br_weird_json order by id`,
      )
      expect(landed).toEqual([
        { id: 1, p: '{"a": [1, 2]}', parsed: '{"a": [1, 2]}', c: '{1,2}', e: '[1, 2]', v: 'v' },
        { id: 2, p: null, parsed: null, c: null, e: '[]', v: null },
        { id: 3, p: '"s"', parsed: '"s"', c: '{}', e: '[]', v: '' },
      ])
    }
  })

  it('explodes an array column named __proto__ into rows that keep every name', async () => {
    await db.sourceSql(`drop table if exists weird_explode`)
    await db.sourceSql(`create table weird_explode (id int, "__proto__" text[], "toString" text)`)
    await db.sourceSql(`insert into weird_explode values (1, '{a,b}', 't'), (2, null, null)`)
    const sink = memorySink()
    await extract({ from: tableSource(db.source, { table: 'weird_explode' }), through: [expandArrays({ mode: 'explode' })], to: sink })
    const rows = sink.rows.map((row) => Object.fromEntries(Object.entries(row)))
    expect(rows).toEqual([
      { id: 1, ['__proto__']: ['a', 'b'], toString: 't', ['__proto___element']: 'a', ['__proto___index']: 1 },
      { id: 1, ['__proto__']: ['a', 'b'], toString: 't', ['__proto___element']: 'b', ['__proto___index']: 2 },
      { id: 2, ['__proto__']: null, toString: null, ['__proto___element']: null, ['__proto___index']: null },
    ])
    for (const row of sink.rows) expect(Object.keys(row)).toEqual(['id', '__proto__', 'toString', '__proto___element', '__proto___index'])
  })
})

describe('row building and COPY text with untrusted names (unit)', () => {
  const columns: Column[] = [
    { name: '__proto__', type: 'integer', typeOid: 23 },
    { name: 'constructor', type: 'text', typeOid: 25 },
    { name: 'toString', type: 'text', typeOid: 25 },
  ]

  it('builds rows that own every column and inherit nothing', () => {
    const row = rowBuilder(columns)(['5', null, 'x'])
    expect(Object.keys(row)).toEqual(['__proto__', 'constructor', 'toString'])
    expect(Object.getOwnPropertyDescriptor(row, '__proto__')?.value).toBe(5)
    expect(Object.getOwnPropertyDescriptor(row, 'constructor')?.value).toBe(null)
    // Read by a name only known as a string: `row.hasOwnProperty` would be typed as Object's method.
    const inherited: string = 'hasOwnProperty'
    expect(row[inherited]).toBeUndefined()
    const nulls = rowBuilder(columns)([null, null, null])
    expect(Object.getOwnPropertyDescriptor(nulls, '__proto__')?.value).toBe(null)
  })

  it('decodes COPY text into the same rows and encodes them back byte for byte', () => {
    const text = '5\t\\N\tx\n\\N\tc\t\\N\n'
    const decoder = new CopyTextDecoder(columns.length)
    const build = rowBuilder(columns)
    const rows = decoder.push(Buffer.from(text)).map(build)
    expect(rows.map((row) => Object.getOwnPropertyDescriptor(row, '__proto__')?.value)).toEqual([5, null])
    expect(rowEncoder(columns)(rows)).toBe(text)
  })

  it('writes a missing column as NULL, never as a member of Object.prototype', () => {
    // A row from user code (a plain object) that lacks the columns.
    expect(rowEncoder(columns)([{}])).toBe('\\N\t\\N\t\\N\n')
  })
})
