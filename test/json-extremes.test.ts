import { describe, expect, it } from 'vitest'
import { copySource, expandArrays, extract, memorySink, parseJsonb, postgresSink, tableSource, type Source } from '../src/index.js'
import { toJsonText } from '../src/pg.js'
import { whyJsonbCannotHold } from '../src/pg/jsonb-limits.js'
import { JsonNumber, parseJsonLossless } from '../src/util/lossless-json.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('jsonx')

describe('numbers a double cannot hold (unit)', () => {
  it('keeps overflowing and underflowing numbers as JsonNumber, written back as the same number', () => {
    const text = '{"big": 1e400, "neg": -1.5E+400, "tiny": 1e-400, "sub": 4.9e-324, "zero": 0e-400, "min": 5e-324, "ok": 1.5, "s": "1e400"}'
    const parsed = parseJsonLossless(text) as Record<string, unknown>
    expect(parsed).toEqual({
      big: new JsonNumber('1e400'),
      neg: new JsonNumber('-1.5E+400'),
      tiny: new JsonNumber('1e-400'),
      sub: new JsonNumber('4.9e-324'), // the double nearest is 5e-324: digits lost
      zero: 0,
      min: 5e-324, // exactly a double's shortest text
      ok: 1.5,
      s: '1e400',
    })
    expect(toJsonText(parsed)).toBe('{"big":1e400,"neg":-1.5E+400,"tiny":1e-400,"sub":4.9e-324,"zero":0,"min":5e-324,"ok":1.5,"s":"1e400"}')
    expect(Number(parsed.big)).toBe(Number.POSITIVE_INFINITY)
    expect(String(parsed.tiny)).toBe('1e-400')
    // Integers keep their bigint form; a decimal in the normal range is a JS number as before.
    expect(parseJsonLossless('[1e400, 123456789012345678901, 0.30000000000000004]')).toEqual([
      new JsonNumber('1e400'),
      123456789012345678901n,
      0.30000000000000004,
    ])
  })

  it('refuses to hold anything but a JSON number (it is written into JSON as it is)', () => {
    expect(() => new JsonNumber('1, "x": 2')).toThrow(TypeError)
    expect(() => new JsonNumber('Infinity')).toThrow(TypeError)
  })
})

describe('what jsonb cannot store (unit)', () => {
  const why = (text: string) => whyJsonbCannotHold(text, parseJsonLossless(text))

  it('finds \\u0000 and lone surrogates in values and keys, nothing in ordinary text', () => {
    expect(why('{"a": "x\\u0000y"}')).toMatch(/\\u0000/)
    expect(why('{"x\\u0000": 1}')).toMatch(/\\u0000/)
    expect(why('["\\ud800"]')).toMatch(/surrogate/)
    expect(why('"\\udc00x"')).toMatch(/surrogate/)
    expect(why('"\\ud83d\\ude80 \\u00e9"')).toBeUndefined() // a pair is one character
    expect(why('"\\\\u0000"')).toBeUndefined() // a backslash, then the letters u0000
    expect(why('{"a": [1, "b", {"c": null}]}')).toBeUndefined()
  })

  it('finds numbers beyond numeric: 131072 digits before the point, 16383 after', () => {
    expect(why('[1e131071]')).toBeUndefined()
    expect(why('[1e131072]')).toMatch(/numeric range/)
    expect(why('[1e-16383]')).toBeUndefined()
    expect(why('[1e-16384]')).toMatch(/numeric range/)
    // numeric keeps the scale as written: 1.0e-16383 has 16384 digits after the point.
    expect(why('[1.0e-16382]')).toBeUndefined()
    expect(why('[1.0e-16383]')).toMatch(/numeric range/)
    // A double holds this one (it is 1), so it lands as 1 whatever its written scale.
    expect(why(`[1.${'0'.repeat(16384)}]`)).toBeUndefined()
    expect(why(`[${'9'.repeat(131073)}]`)).toMatch(/numeric range/)
  })
})

describe('parseJsonb and expandArrays with JSON jsonb or JavaScript cannot hold as is', () => {
  async function seed() {
    await db.sourceSql('drop table if exists docs')
    await db.sourceSql(`create table docs (id int primary key, j json, t text, b jsonb, ja json[])`)
    await db.sourceSql(`insert into docs values
      (1, '{"big": 1e400, "tiny": 1e-400, "neg": -1e400, "sub": 4.9e-324, "ok": 1.5, "deep": [{"x": 2e-999}]}', '1e-400',
          '{"big": 1e400, "tiny": 1e-400}', array['{"n": 1e400}', '3']::json[]),
      (2, '{"s": "nul\\u0000here"}', '"\\ud800"', '"fine"', array['"\\u0000"', '{"ok": 1e-400}']::json[]),
      (3, '[1e131072]', '{"k\\u0000": 1}', null, null),
      (4, '{"a": 1}', 'not json', '[]', '{}'),
      (5, null, null, null, null)`)
  }

  const sources = (): [string, Source][] => [
    ['copySource (decoded)', copySource(db.source, { table: 'docs' })],
    ['tableSource', tableSource(db.source, { table: 'docs' })],
  ]

  it('lands overflowing and underflowing numbers in bronze exactly, and rows jsonb cannot hold as errors, without failing', async () => {
    await seed()
    for (const [name, source] of sources()) {
      await db.warehouseSql('drop table if exists bronze.br_docs')
      const report = await extract({
        from: source,
        through: [parseJsonb({ columns: ['j', 't', 'b'] }), expandArrays()],
        to: postgresSink(db.warehouse),
        fastPath: false,
      })
      expect(report.rows, name).toBe(5)
      expect(report.counters, name).toEqual({ 'parseJsonb.failed': 1, 'parseJsonb.unsupported': 4 })

      // Parsed numbers equal the source's as jsonb values: 1e400 is 1e400, never "Infinity"; 1e-400 never 0.
      const exact = await db.warehouseSql(
        `select id, j_parsed = j::jsonb as j, t_parsed = t::jsonb as t, b_parsed = b as b, b_parsed::text as b_text
           from bronze.br_docs where id = 1`,
      )
      expect(exact, name).toEqual([{ id: 1, j: true, t: true, b: true, b_text: (await db.sourceSql(`select b::text as b from docs where id = 1`))[0]?.b }])
      expect(await db.warehouseSql(`select j_parsed->'deep'->0->>'x' as x from bronze.br_docs where id = 1`), name).toEqual([
        { x: (await db.sourceSql(`select (j::jsonb)->'deep'->0->>'x' as x from docs where id = 1`))[0]?.x },
      ])

      // What jsonb cannot store: the row is kept, its text in _raw, the reason in _reason.
      const errors = await db.warehouseSql(
        `select id, j_parsed->>'_error' as j_error, j_parsed->>'_raw' = j::text as j_raw, j_parsed->>'_reason' as j_reason,
                t_parsed->>'_error' as t_error, t_parsed->>'_raw' = t as t_raw
           from bronze.br_docs where id in (2, 3, 4) order by id`,
      )
      expect(errors, name).toEqual([
        { id: 2, j_error: 'jsonb_unsupported', j_raw: true, j_reason: expect.stringMatching(/\\u0000/), t_error: 'jsonb_unsupported', t_raw: true },
        { id: 3, j_error: 'jsonb_unsupported', j_raw: true, j_reason: expect.stringMatching(/numeric range/), t_error: 'jsonb_unsupported', t_raw: true },
        { id: 4, j_error: null, j_raw: null, j_reason: null, t_error: 'parse_failed', t_raw: true },
      ])
      expect(await db.warehouseSql(`select id, j_parsed, t_parsed, b_parsed from bronze.br_docs where id = 5`), name).toEqual([
        { id: 5, j_parsed: null, t_parsed: null, b_parsed: null },
      ])

      // json[] elements: exact numbers embedded as numbers, an element jsonb cannot store embedded as its text.
      const expanded = await db.warehouseSql(`select id, ja_expanded::text as e from bronze.br_docs order by id`)
      expect(
        expanded.map((row) => row.e),
        name,
      ).toEqual([`[{"n": 1${'0'.repeat(400)}}, 3]`, `["\\"\\\\u0000\\"", {"ok": 0.${'0'.repeat(399)}1}]`, '[]', '[]', '[]'])
    }
  })

  it('hands memorySink JsonNumber values that keep the text', async () => {
    await seed()
    const sink = memorySink()
    await extract({ from: tableSource(db.source, { table: 'docs' }), through: [parseJsonb({ columns: ['j'] })], to: sink })
    const first = sink.rows.find((row) => row.id === 1)
    expect(first?.j_parsed).toMatchObject({ big: new JsonNumber('1e400'), tiny: new JsonNumber('1e-400'), ok: 1.5 })
  })
})
