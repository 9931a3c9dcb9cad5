import { describe, expect, it } from 'vitest'
import { ConfigError, copySource, expandArrays, extract, memorySink, parseJsonb, postgresSink, tableSource } from '../src/index.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('json')

describe('parseJsonb', () => {
  it('parses JSON columns into <col>_parsed, keeps bad JSON as {_error, _raw} and counts it', async () => {
    await db.sourceSql(`create table docs (id int primary key, body jsonb, raw text, big jsonb)`)
    await db.sourceSql(`insert into docs values
      (1, '{"a": 1, "b": [true, null]}', '{"ok": "yes"}', '{"n": 12345678901234567890}'),
      (2, '"just a string"', 'not json {', null),
      (3, null, '', '[1.5, -0, 1e3]'),
      (4, '[]', '{"unterminated": ', '{}'),
      (5, '{"id": -9223372036854775808, "s": "12345678901234567890", "safe": 9007199254740991, "arr": [18446744073709551615, 1.5]}',
          '{"deep": {"n": [99999999999999999999999999999]}}', '[9007199254740993]')`)
    const sink = memorySink()
    const report = await extract({
      from: tableSource(db.source, { table: 'docs' }),
      through: [parseJsonb({ columns: ['body', 'raw'] })],
      to: sink,
    })
    const byId = Object.fromEntries(sink.rows.map((row) => [row.id, row]))
    expect(byId[1]).toMatchObject({ body_parsed: { a: 1, b: [true, null] }, raw_parsed: { ok: 'yes' } })
    expect(byId[2]).toMatchObject({ body_parsed: 'just a string', raw_parsed: { _error: 'parse_failed', _raw: 'not json {' } })
    expect(byId[3]).toMatchObject({ body_parsed: null, raw_parsed: { _error: 'parse_failed', _raw: '' } })
    expect(byId[4]).toMatchObject({ body_parsed: [], raw_parsed: { _error: 'parse_failed', _raw: '{"unterminated": ' } })
    // Integers beyond 2^53 keep every digit, as bigint; safe ones and digits inside strings stay as they were.
    expect(byId[5]?.body_parsed).toEqual({ id: -9223372036854775808n, s: '12345678901234567890', safe: 9007199254740991, arr: [18446744073709551615n, 1.5] })
    expect(byId[5]?.raw_parsed).toEqual({ deep: { n: [99999999999999999999999999999n] } })
    expect(report.counters).toEqual({ 'parseJsonb.failed': 3 })
  })

  it('lands the parsed values in bronze as jsonb, bad rows kept, the source text untouched', async () => {
    const report = await extract({
      from: copySource(db.source, { table: 'docs' }),
      through: [parseJsonb()],
      to: postgresSink(db.warehouse),
    })
    expect(report.path).toBe('rows')
    const rows = await db.warehouseSql(
      `select id, body_parsed::text as body, big::text as big, big_parsed::text as big_parsed, pg_typeof(body_parsed)::text as type
         from bronze.br_docs order by id`,
    )
    expect(rows).toEqual([
      { id: 1, body: '{"a": 1, "b": [true, null]}', big: '{"n": 12345678901234567890}', big_parsed: '{"n": 12345678901234567890}', type: 'jsonb' },
      { id: 2, body: '"just a string"', big: null, big_parsed: null, type: 'jsonb' },
      // jsonb itself normalises numbers: the source already holds [1.5, 0, 1000].
      { id: 3, body: null, big: '[1.5, 0, 1000]', big_parsed: '[1.5, 0, 1000]', type: 'jsonb' },
      { id: 4, body: '[]', big: '{}', big_parsed: '{}', type: 'jsonb' },
      { id: 5, body: expect.any(String), big: '[9007199254740993]', big_parsed: '[9007199254740993]', type: 'jsonb' },
    ])
    // Every parsed value equals its source as jsonb, large integers included (raw holds text, some of it bad JSON).
    expect(await db.warehouseSql(`select id from bronze.br_docs where body_parsed is distinct from body or big_parsed is distinct from big`)).toEqual([])
  })

  it('names an unknown column', () => {
    return expect(extract({ from: tableSource(db.source, { table: 'docs' }), through: [parseJsonb({ columns: ['nope'] })], to: memorySink() })).rejects.toThrow(
      /no column "nope"/,
    )
  })
})

describe('expandArrays', () => {
  it('adds <col>_expanded as a JSON array for arrays of any element type; NULL gives []', async () => {
    await db.sourceSql(`create table arrays (id int primary key, tags text[], nums numeric[], ids bigint[], grid int[], docs jsonb[], stamps timestamptz[])`)
    await db.sourceSql(`insert into arrays values
      (1, '{a,"b c",NULL}', '{1.10,NaN}', '{9007199254740993}', '{{1,2},{3,4}}', array['{"k":1}'::jsonb], '{"2024-01-01 00:00:00.000001+00"}'),
      (2, null, '{}', null, '[0:1]={7,8}', null, null)`)
    const sink = memorySink()
    await extract({ from: tableSource(db.source, { table: 'arrays' }), through: [expandArrays()], to: sink })
    const [first, second] = [...sink.rows].sort((a, b) => Number(a.id) - Number(b.id))
    expect(first).toMatchObject({
      tags_expanded: ['a', 'b c', null],
      nums_expanded: ['1.10', 'NaN'],
      ids_expanded: [9007199254740993n],
      grid_expanded: [
        [1, 2],
        [3, 4],
      ],
      docs_expanded: [{ k: 1 }],
      stamps_expanded: ['2024-01-01 00:00:00.000001+00'],
    })
    expect(second).toMatchObject({ tags_expanded: [], nums_expanded: [], ids_expanded: [], grid_expanded: [7, 8], docs_expanded: [] })

    await extract({ from: tableSource(db.source, { table: 'arrays' }), through: [expandArrays()], to: postgresSink(db.warehouse) })
    expect(
      await db.warehouseSql(`select ids_expanded::text as ids, grid_expanded::text as grid, tags_expanded::text as tags from bronze.br_arrays order by id`),
    ).toEqual([
      { ids: '[9007199254740993]', grid: '[[1, 2], [3, 4]]', tags: '["a", "b c", null]' },
      { ids: '[]', grid: '[7, 8]', tags: '[]' },
    ])
  })

  it('explodes one column into one row per element, keeping rows whose array is empty', async () => {
    const report = await extract({
      from: tableSource(db.source, { table: 'arrays', columns: ['id', 'grid'] }),
      through: [expandArrays({ columns: ['grid'], mode: 'explode' })],
      to: postgresSink(db.warehouse, { table: 'grid_elements' }),
    })
    expect(report.rows).toBe(6)
    expect(await db.warehouseSql(`select id, grid_element, grid_index from bronze.grid_elements order by id, grid_index`)).toEqual([
      { id: 1, grid_element: 1, grid_index: 1 },
      { id: 1, grid_element: 2, grid_index: 2 },
      { id: 1, grid_element: 3, grid_index: 3 },
      { id: 1, grid_element: 4, grid_index: 4 },
      { id: 2, grid_element: 7, grid_index: 1 },
      { id: 2, grid_element: 8, grid_index: 2 },
    ])
    const empty = memorySink()
    await extract({ from: tableSource(db.source, { table: 'arrays', columns: ['id', 'tags'] }), through: [expandArrays({ mode: 'explode' })], to: empty })
    expect(empty.rows.filter((row) => row.id === 2)).toEqual([{ id: 2, tags: null, tags_element: null, tags_index: null }])
  })

  it('refuses explode over several columns and a non-array column', async () => {
    expect(() => expandArrays({ columns: ['tags', 'nums'], mode: 'explode' })).toThrow(ConfigError)
    await expect(
      extract({ from: tableSource(db.source, { table: 'arrays' }), through: [expandArrays({ columns: ['id'] })], to: memorySink() }),
    ).rejects.toThrow(/not an array column/)
  })
})
