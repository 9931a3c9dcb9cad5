import { describe, expect, it } from 'vitest'
import { bronzeMetadata, commitRun, ConfigError, copySource, extract, postgresSink, runPiece, startRun, tableSource } from '../src/index.js'
import { tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'
import { TYPE_COLUMNS } from './support/type-columns.js'

const db = useDatabases('types')

/** Every common type, with edge values, and the type the bronze table must get for it. */
const COLUMNS = TYPE_COLUMNS

describe('type fidelity through the cursor path', () => {
  it(`runs in the project's time zone (${process.env.TZ})`, () => {
    // 2024-07-01 is in daylight saving time in New York: UTC-4.
    const offset = new Date(2024, 6, 1).getTimezoneOffset()
    expect(offset).toBe(process.env.TZ === 'America/New_York' ? 240 : 0)
  })

  it('lands every common type in bronze equal to the source (two-way EXCEPT on text forms)', async () => {
    await db.sourceSql(`create type mood as enum ('happy', 'sad')`)
    await db.sourceSql(`create domain posint as integer check (value > 0)`)
    await db.sourceSql(`create table all_types (id serial primary key, ${COLUMNS.map(([name, type]) => `${name} ${type}`).join(', ')})`)
    // One row per value position, plus one row of NULLs.
    const rows = Math.max(...COLUMNS.map(([, , , values]) => values.length))
    for (let index = 0; index < rows; index++) {
      const names = COLUMNS.filter(([, , , values]) => values[index] !== undefined)
      await db.sourceSql(
        `insert into all_types (${names.map(([name]) => name).join(', ')}) values (${names.map(([, type, , values]) => `(${values[index]})::${type}`).join(', ')})`,
      )
    }
    await db.sourceSql('insert into all_types default values')

    const report = await extract({
      from: tableSource(db.source, { table: 'all_types' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse),
    })
    expect(report.rows).toBe(rows + 1)

    const comparison = await tablesEqual(db.sourceUrl, 'all_types', db.warehouseUrl, 'bronze.br_all_types', ['id', ...COLUMNS.map(([name]) => name)])
    expect(comparison).toEqual({ missing: 0, extra: 0, sourceRows: rows + 1, targetRows: rows + 1 })

    // The comparison is strict enough to see a lost sign on -0 (which `=` would call equal to 0).
    await db.warehouseSql(`update bronze.br_all_types set c_float8 = 0 where c_float8::text = '-0'`)
    const tampered = await tablesEqual(db.sourceUrl, 'all_types', db.warehouseUrl, 'bronze.br_all_types', ['id', 'c_float8'])
    expect(tampered).toMatchObject({ missing: 1, extra: 1 })
    await db.warehouseSql(`update bronze.br_all_types set c_float8 = '-0' where id = 1`)

    const types = await db.warehouseSql(
      `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a
        where a.attrelid = 'bronze.br_all_types'::regclass and a.attnum > 0 order by a.attnum`,
    )
    const typeOf = Object.fromEntries(types.map((row) => [row.name, row.type]))
    for (const [name, , bronzeType] of COLUMNS) expect({ name, type: typeOf[name] }).toEqual({ name, type: bronzeType })
    expect(typeOf._bronze_loaded_at).toBe('timestamp with time zone')
  })

  it('lands every common type through a scale-out run (pieces into staging, then replace, then merge) equal to the source', async () => {
    const columns = ['id', ...COLUMNS.map(([name]) => name)]
    for (const mode of ['replace', 'merge'] as const) {
      const target = `all_types_scaled_${mode}`
      // merge upserts onto what a first run left, one of its rows changed: the run must put every value back.
      if (mode === 'merge') {
        await extract({
          from: tableSource(db.source, { table: 'all_types' }),
          through: [bronzeMetadata()],
          to: postgresSink(db.warehouse, { table: target, mode: 'merge' }),
        })
        await db.warehouseSql(`update bronze.${target} set c_text = 'changed', c_numeric = 0 where id = 1`)
      }
      const run = await startRun(db.source, db.warehouse, { tables: [{ table: 'all_types', pieces: 3, target }], to: { mode } })
      try {
        await Promise.all(run.plan.pieces.map((piece) => runPiece(run.plan, piece.id, { source: db.source, warehouse: db.warehouse })))
        await commitRun(run.plan, { warehouse: db.warehouse })
      } finally {
        await run.close()
      }
      const comparison = await tablesEqual(db.sourceUrl, 'all_types', db.warehouseUrl, `bronze.${target}`, columns)
      const rows = comparison.sourceRows
      expect(comparison, mode).toEqual({ missing: 0, extra: 0, sourceRows: rows, targetRows: rows })
      const types = await db.warehouseSql(
        `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a
          where a.attrelid = 'bronze.${target}'::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum`,
      )
      const typeOf = Object.fromEntries(types.map((row) => [row.name, row.type]))
      for (const [name, , bronzeType] of COLUMNS) expect({ mode, name, type: typeOf[name] }).toEqual({ mode, name, type: bronzeType })
    }
  })

  it('hands JS values through the lossless type map', async () => {
    const batches = []
    for await (const batch of tableSource(db.source, {
      table: 'all_types',
      columns: ['c_int8', 'c_numeric', 'c_float8', 'c_tstz', 'c_numeric_arr', 'c_int_arr', 'c_bool', 'c_bytea', 'c_posint', 'c_mood_arr'],
      where: { id: 1 },
    })) {
      batches.push(...batch.rows)
    }
    expect(batches).toHaveLength(1)
    const row = batches[0] as Record<string, unknown>
    expect(row.c_int8).toBe(-9223372036854775808n)
    expect(row.c_numeric).toBe('1234567890123456789012345678.0123456789')
    expect(Object.is(row.c_float8, -0)).toBe(true)
    expect(row.c_tstz).toBe('2024-11-03 05:30:00.654321+00')
    expect(row.c_numeric_arr).toEqual(['1.10', '12345678901234567890.123456789', 'NaN'])
    expect(row.c_int_arr).toEqual([1, null, 3])
    expect(row.c_bool).toBe(true)
    expect(row.c_bytea).toEqual(Buffer.from([0, 0xff, 0x5c, 0x0a]))
    expect(row.c_posint).toBe(42)
    expect(row.c_mood_arr).toEqual(['happy', 'sad'])
  })

  it.each([
    ['the COPY byte path', true],
    ['the COPY decoded path', false],
  ])('lands every common type through %s equal to the source', async (_, fastPath) => {
    const table = fastPath ? 'all_types_bytes' : 'all_types_decoded'
    const report = await extract({
      from: copySource(db.source, { table: 'all_types' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { table }),
      fastPath,
    })
    expect(report.path).toBe(fastPath ? 'copy-bytes' : 'rows')
    const columns = ['id', ...COLUMNS.map(([name]) => name)]
    const comparison = await tablesEqual(db.sourceUrl, 'all_types', db.warehouseUrl, `bronze.${table}`, columns)
    expect(comparison).toMatchObject({ missing: 0, extra: 0 })
    expect(comparison.targetRows).toBeGreaterThan(1)
  })

  /** Columns the warehouse holds as another type (docs/types.md): these can only go as text. */
  const MAPPED = new Set(['c_mood', 'c_posint', 'c_mood_arr'])
  const builtIn = COLUMNS.map(([name]) => name).filter((name) => !MAPPED.has(name))

  it.each(['replace', 'append', 'merge'] as const)('lands every built-in type through the binary byte path (%s) equal to the source', async (mode) => {
    const table = `all_types_binary_${mode}`
    const report = await extract({
      from: copySource(db.source, { table: 'all_types', columns: ['id', ...builtIn] }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { table, mode }),
    })
    expect([report.path, report.copyFormat, report.copyFormatReason]).toEqual(['copy-bytes', 'binary', undefined])
    const comparison = await tablesEqual(db.sourceUrl, 'all_types', db.warehouseUrl, `bronze.${table}`, ['id', ...builtIn])
    expect(comparison).toEqual({ missing: 0, extra: 0, sourceRows: report.rows, targetRows: report.rows })
    expect(report.rows).toBeGreaterThan(1)
    // The run constants are there, the same on every row, whichever way the mode stores them.
    const [meta] = await db.warehouseSql(
      `select count(distinct (_bronze_loaded_at, _bronze_source, _bronze_schema, _bronze_table, _bronze_extraction_type))::int as n,
                min(_bronze_loaded_at)::text as at, min(_bronze_table) as source_table, count(*)::int as rows from bronze.${table}`,
    )
    expect(meta).toMatchObject({ n: 1, source_table: 'all_types', rows: report.rows })
    expect(new Date(meta?.at as string).getTime()).toBe(report.startedAt.getTime())
  })

  it('says why the byte path went text for a column the warehouse holds as another type, and lands it equal', async () => {
    for (const name of MAPPED) {
      const table = `all_types_mapped_${name}`
      const report = await extract({
        from: copySource(db.source, { table: 'all_types', columns: ['id', 'c_int4', name] }),
        through: [bronzeMetadata()],
        to: postgresSink(db.warehouse, { table }),
      })
      expect({ name, format: report.copyFormat }).toEqual({ name, format: 'text' })
      expect(report.copyFormatReason).toContain(`"${name}"`)
      const comparison = await tablesEqual(db.sourceUrl, 'all_types', db.warehouseUrl, `bronze.${table}`, ['id', 'c_int4', name])
      expect(comparison).toMatchObject({ missing: 0, extra: 0 })
    }
  })

  it("goes text when asked (copyFormat: 'text'), and refuses binary it cannot do before writing anything", async () => {
    const text = await extract({
      from: copySource(db.source, { table: 'all_types', columns: ['id', ...builtIn] }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { table: 'all_types_asked_text' }),
      copyFormat: 'text',
    })
    expect([text.copyFormat, text.copyFormatReason]).toEqual(['text', "copyFormat: 'text' was asked for"])
    expect(await tablesEqual(db.sourceUrl, 'all_types', db.warehouseUrl, 'bronze.all_types_asked_text', ['id', ...builtIn])).toMatchObject({
      missing: 0,
      extra: 0,
    })

    const refused = extract({
      from: copySource(db.source, { table: 'all_types' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { table: 'all_types_asked_binary' }),
      copyFormat: 'binary',
    })
    await expect(refused).rejects.toBeInstanceOf(ConfigError)
    await expect(refused).rejects.toThrow(/binary COPY is not possible here: column "c_mood"/)
    const [exists] = await db.warehouseSql(`select to_regclass('bronze.all_types_asked_binary') is not null as found`)
    expect(exists?.found).toBe(false)
  })
})
