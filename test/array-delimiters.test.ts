import { describe, expect, it } from 'vitest'
import { copySource, expandArrays, extract, memorySink, parallelSource, postgresSink, querySource, tableSource, type Row, type Source } from '../src/index.js'
import { rowEncoder, type Column } from '../src/pg.js'
import { formatArrayLiteral, parseArrayLiteral } from '../src/pg/array-literal.js'
import { typeParsersFor } from '../src/pg/type-parsers.js'
import { connect } from '../src/index.js'
import { tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('delim')

/**
 * Array elements are separated by their element type's `pg_type.typdelim`: `,` for nearly every type, `;` for `box`
 * (whose own text holds commas), and whatever an extension chose (PostGIS's geometry uses `:`).
 */
describe('array literals with their element type’s delimiter (unit)', () => {
  it('splits a box[] literal on ; and keeps the commas inside each box', () => {
    expect(parseArrayLiteral('{(3,4),(1,2);(5,6),(0,0)}', String, ';')).toEqual(['(3,4),(1,2)', '(5,6),(0,0)'])
    expect(parseArrayLiteral('{{(1,1),(0,0);NULL};{"(2,2),(1,1)";(3,3),(3,3)}}', String, ';')).toEqual([
      ['(1,1),(0,0)', null],
      ['(2,2),(1,1)', '(3,3),(3,3)'],
    ])
    expect(parseArrayLiteral('{"a;b",c\\,d}', String, ',')).toEqual(['a;b', 'c,d'])
  })

  it('writes a literal with the delimiter it is given, and reads it back', () => {
    const values = [
      ['(3,4),(1,2)', null],
      ['a;b"c\\', '(0,0),(0,0)'],
    ]
    const text = formatArrayLiteral(values, String, ';')
    expect(text).toBe('{{"(3,4),(1,2)";NULL};{"a;b\\"c\\\\";"(0,0),(0,0)"}}')
    expect(parseArrayLiteral(text, String, ';')).toEqual(values)
  })

  it('parses and encodes a column by the delimiter the catalog gave it', () => {
    const box: Column = { name: 'b', type: 'box[]', typeOid: 1020, elementOid: 603, delimiter: ';' }
    const parse = typeParsersFor([box]).getTypeParser(1020 as never, 'text') as (text: string) => unknown
    const value = parse('{(3,4),(1,2);(5,6),(0,0)}')
    expect(value).toEqual(['(3,4),(1,2)', '(5,6),(0,0)'])
    expect(rowEncoder([box])([{ b: value }])).toBe('{"(3,4),(1,2)";"(5,6),(0,0)"}\n')
    // Carried as text[] (an extension's element type): written with text's own delimiter.
    const carried: Column = { name: 'g', type: 'text[]', typeOid: 99999, elementOid: 99998, delimiter: ':' }
    expect(rowEncoder([carried])([{ g: ['a:b', 'c,d'] }])).toBe('{"a:b","c,d"}\n')
  })
})

describe('type parsers never throw (pg calls them inside its socket handler; a throw there hangs the cursor)', () => {
  it('keeps an array literal it cannot read as the server’s text', () => {
    const box: Column = { name: 'b', type: 'box[]', typeOid: 1020, elementOid: 603 } // delimiter not given
    const parse = typeParsersFor([box]).getTypeParser(1020 as never, 'text') as (text: string) => unknown
    expect(parse('{{(1,1),(0,0)};{(2,2),(1,1)}}')).toBe('{{(1,1),(0,0)};{(2,2),(1,1)}}')
  })

  it('reads bytea in the escape output format too', async () => {
    const escaped = connect({ url: db.sourceUrl, settings: { bytea_output: 'escape' } })
    try {
      await db.sourceSql('drop table if exists blobs')
      await db.sourceSql(`create table blobs (id int, b bytea, bs bytea[])`)
      await db.sourceSql(`insert into blobs values (1, '\\x005c0aff41e282ac'::bytea, array['\\x5c00'::bytea, null]), (2, '', '{}')`)
      const sink = memorySink()
      await extract({ from: tableSource(escaped, { table: 'blobs' }), to: sink })
      const rows = [...sink.rows].sort((a, b) => Number(a.id) - Number(b.id))
      expect(rows.map((row) => [row.b, row.bs])).toEqual([
        [Buffer.from('005c0aff41e282ac', 'hex'), [Buffer.from('5c00', 'hex'), null]],
        [Buffer.alloc(0), []],
      ])
    } finally {
      await escaped.close()
    }
  })
})

describe('box[] and other arrays through the decoded paths', () => {
  const COLUMNS = ['id', 'boxes', 'grid', 'ints', 'texts', 'bounded']

  async function seed() {
    await db.sourceSql('drop table if exists shapes')
    await db.sourceSql(`drop type if exists colon_text cascade`)
    // A base type outside pg_catalog whose arrays use ':' (as PostGIS's geometry does), built on text's I/O.
    await db.sourceSql(`create type colon_text`)
    await db.sourceSql(`create function colon_text_in(cstring) returns colon_text language internal immutable strict as 'textin'`)
    await db.sourceSql(`create function colon_text_out(colon_text) returns cstring language internal immutable strict as 'textout'`)
    await db.sourceSql(`create type colon_text (input = colon_text_in, output = colon_text_out, internallength = variable, delimiter = ':')`)
    await db.sourceSql(`create table shapes (
      id int primary key, boxes box[], grid box[][], ints int[], texts text[], bounded box[], colons colon_text[])`)
    await db.sourceSql(`insert into shapes values
      (1, '{"(1,2),(3,4)";"(0,0),(5,6)"}', '{{"(1,1),(0,0)";NULL};{"(2,2),(1,1)";"(3,3),(3,3)"}}', '{1,NULL,3}', '{"a,b","c;d",NULL,""}',
          '[0:1]={"(1,1),(0,0)";"(2,2),(1,1)"}', '{"a:b":"c,d":NULL}'),
      (2, null, null, null, null, null, null),
      (3, '{}', '{}', '{}', '{}', '{}', '{}'),
      (4, '{"(-1.5,2.25),(0,0)"}', '{{"(1,1),(1,1)"}}', '{-2147483648}', '{"back\\\\slash","q\\"uote"}', '[2:2]={"(1,1),(1,1)"}', '{x}')`)
  }

  const sources = (): [string, Source][] => [
    ['tableSource', tableSource(db.source, { table: 'shapes' })],
    ['copySource (decoded)', copySource(db.source, { table: 'shapes' })],
    ['parallelSource (decoded)', parallelSource(db.source, { table: 'shapes' })],
    ['querySource', querySource(db.source, db.source.kysely<{ shapes: Row }>().selectFrom('shapes').selectAll(), { name: 'shapes' })],
  ]

  it('lands box[] (2-D and with bounds), int[], text[] and an extension type’s array in bronze exactly', async () => {
    await seed()
    for (const [name, source] of sources()) {
      await db.warehouseSql('drop table if exists bronze.br_shapes')
      const report = await extract({ from: source, to: postgresSink(db.warehouse), fastPath: false })
      expect(report.path, name).toBe('rows')
      expect(await tablesEqual(db.sourceUrl, 'shapes', db.warehouseUrl, 'bronze.br_shapes', COLUMNS), name).toEqual({
        missing: 0,
        extra: 0,
        sourceRows: 4,
        targetRows: 4,
      })
      const types = await db.warehouseSql(
        `select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute
          where attrelid = 'bronze.br_shapes'::regclass and attname in ('boxes', 'colons') order by attname`,
      )
      expect(types, name).toEqual([
        { name: 'boxes', type: 'box[]' },
        { name: 'colons', type: 'text[]' },
      ])
      // colon_text[] is carried as text[]: the same elements, written with text's delimiter.
      const want = await db.sourceSql(`select id, colons::text[]::text as colons from shapes order by id`)
      const bronze = await db.warehouseSql(`select id, colons::text as colons from bronze.br_shapes order by id`)
      expect(bronze, name).toEqual(want)
    }
  })

  it('gives memorySink the elements the server has (each box whole)', async () => {
    await seed()
    const expected = await db.sourceSql(
      `select id, array_to_json(boxes::text[]) as boxes, array_to_json(grid::text[]) as grid, array_to_json(colons::text[]) as colons
         from shapes order by id`,
    )
    for (const [name, source] of sources()) {
      const sink = memorySink()
      await extract({ from: source, to: sink, fastPath: false })
      const rows = [...sink.rows].sort((a, b) => Number(a.id) - Number(b.id))
      expect(
        rows.map((row) => ({ id: row.id, boxes: row.boxes, grid: row.grid, colons: row.colons })),
        name,
      ).toEqual(expected)
    }
  })

  it('expands box[] into JSON arrays and into one row per box, bounds or not', async () => {
    await seed()
    for (const [name, source] of sources()) {
      await db.warehouseSql('drop table if exists bronze.br_shapes')
      await extract({
        from: source,
        through: [expandArrays({ columns: ['boxes', 'grid', 'bounded', 'colons'] })],
        to: postgresSink(db.warehouse),
        fastPath: false,
      })
      const landed = await db.warehouseSql(
        `select id, boxes_expanded::text as boxes, grid_expanded::text as grid, bounded_expanded::text as bounded, colons_expanded::text as colons
           from bronze.br_shapes order by id`,
      )
      const expected = await db.sourceSql(
        `select id, coalesce(to_jsonb(boxes::text[]), '[]')::text as boxes, coalesce(to_jsonb(grid::text[]), '[]')::text as grid,
                coalesce(to_jsonb(bounded::text[]), '[]')::text as bounded, coalesce(to_jsonb(colons::text[]), '[]')::text as colons
           from shapes order by id`,
      )
      expect(landed, name).toEqual(expected)

      const sink = memorySink()
      await extract({ from: source, through: [expandArrays({ columns: ['grid'], mode: 'explode' })], to: sink, fastPath: false })
      const exploded = sink.rows
        .map((row: Row) => [row.id, row.grid_index, row.grid_element])
        .sort((a, b) => Number(a[0]) - Number(b[0]) || Number(a[1]) - Number(b[1]))
      expect(exploded, name).toEqual([
        [1, 1, '(1,1),(0,0)'],
        [1, 2, null],
        [1, 3, '(2,2),(1,1)'],
        [1, 4, '(3,3),(3,3)'],
        [2, null, null],
        [3, null, null],
        [4, 1, '(1,1),(1,1)'],
      ])
    }
  })
})

describe('a warehouse whose sessions read arrays with array_nulls = off', () => {
  it('still lands NULL elements as NULL and the string NULL as a string, on every path', async () => {
    await db.sourceSql(`drop table if exists nulls; create table nulls (id int primary key, words text[], counts int[])`)
    await db.sourceSql(`insert into nulls values (1, array['x', null, 'NULL'], array[1, null]), (2, array[null]::text[], array[null]::int[])`)
    await db.warehouseSql(`alter database "${db.warehouseDatabase}" set array_nulls = off`)
    // A connection made after the change: its sessions start with the database's setting.
    const warehouse = connect(db.warehouseUrl)
    try {
      for (const [name, from, copyFormat] of [
        ['tableSource', () => tableSource(db.source, { table: 'nulls' }), undefined],
        ['copySource, text', () => copySource(db.source, { table: 'nulls' }), 'text'],
        ['copySource, binary', () => copySource(db.source, { table: 'nulls' }), 'binary'],
      ] as const) {
        await extract({ from: from(), to: postgresSink(warehouse, { table: 'nulls' }), ...(copyFormat ? { copyFormat } : {}) })
        const read = `select id, words::text, array_position(words, null) as null_at, counts::text from`
        expect(await db.warehouseSql(`${read} bronze.nulls order by id`), name).toEqual(await db.sourceSql(`${read} nulls order by id`))
      }
    } finally {
      await warehouse.close()
      await db.warehouseSql(`alter database "${db.warehouseDatabase}" reset array_nulls`)
    }
  })
})
