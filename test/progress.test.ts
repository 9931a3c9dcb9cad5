import { sql } from 'kysely'
import { describe, expect, it } from 'vitest'
import { bronzeMetadata, copySource, extract, partitionedSource, postgresSink, querySource, tableSource, type Progress, type Source } from '../src/index.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('progress')

/** A table that autovacuum leaves alone, so its statistics are exactly what the test made them. */
async function seed(table: string, rows: number, analyze: boolean) {
  await db.sourceSql(`drop table if exists ${table}`)
  await db.sourceSql(`create table ${table} (id bigint primary key, note text) with (autovacuum_enabled = false)`)
  await db.sourceSql(`insert into ${table} select g, repeat('x', 40) || g from generate_series(1, $1) g`, [rows])
  if (analyze) await db.sourceSql(`analyze ${table}`)
}

async function run(from: Source, fastPath = true): Promise<{ events: Progress[]; report: Awaited<ReturnType<typeof extract>> }> {
  const events: Progress[] = []
  const report = await extract({
    from,
    through: [bronzeMetadata()],
    to: postgresSink(db.warehouse, { mode: 'replace' }),
    onProgress: (p) => events.push(p),
    fastPath,
  })
  return { events, report }
}

describe('progress events', () => {
  it("carry the analyzed table's row count as their total, a percent and an ETA, and mark the last event final", async () => {
    await seed('analyzed', 20_000, true)
    for (const fastPath of [true, false]) {
      const { events, report } = await run(copySource(db.source, { table: 'analyzed', batchSize: 500 }), fastPath)
      expect(report.rows).toBe(20_000)
      expect(events.length).toBeGreaterThan(1)
      const last = events.at(-1)!
      expect(last).toMatchObject({ final: true, rows: 20_000, totalRows: 20_000, percent: 100, etaSeconds: 0, bytes: report.bytes })
      expect(events.filter((event) => event.final)).toHaveLength(1)
      for (const event of events.slice(0, -1)) {
        expect(event.totalRows).toBe(20_000)
        expect(event.percent).toBeLessThan(100)
        expect(event.percent).toBeCloseTo((event.rows / 20_000) * 100, 0)
        expect(event.relationBytes).toBeGreaterThan(20_000 * 40)
      }
      // Percent only grows.
      const percents = events.map((event) => event.percent!)
      expect([...percents].sort((a, b) => a - b)).toEqual(percents)
    }
  })

  it('give no total for a table never analyzed (reltuples = -1) rather than a wrong one', async () => {
    await seed('never_analyzed', 5_000, false)
    const [{ reltuples }] = (await db.sourceSql(`select reltuples::float8 as reltuples from pg_class where oid = 'never_analyzed'::regclass`)) as [
      { reltuples: number },
    ]
    expect(reltuples).toBe(-1)
    for (const from of [copySource(db.source, { table: 'never_analyzed' }), tableSource(db.source, { table: 'never_analyzed' })]) {
      const { events } = await run(from)
      expect(events.at(-1)).toMatchObject({ final: true, rows: 5_000 })
      for (const event of events) {
        expect(event.totalRows).toBeUndefined()
        expect(event.percent).toBeUndefined()
        expect(event.etaSeconds).toBeUndefined()
      }
    }
  })

  it('scale the statistics to the pages a table has now, as the planner does, when it grew since ANALYZE', async () => {
    await seed('grown', 4_000, true)
    await db.sourceSql(`insert into grown select g, repeat('x', 40) || g from generate_series(4001, 12000) g`)
    const { events } = await run(tableSource(db.source, { table: 'grown', batchSize: 1_000 }))
    const first = events[0]!
    expect(first.totalRows).toBeGreaterThan(12_000 * 0.95)
    expect(first.totalRows).toBeLessThan(12_000 * 1.05)
  })

  it('give no total for a query source or a row filter', async () => {
    await seed('filtered', 3_000, true)
    const query = db.source.kysely<{ filtered: { id: string; note: string } }>().selectFrom('filtered').selectAll().where('id', '<=', '100')
    const filters: Source[] = [
      querySource(db.source, query, { name: 'first_hundred' }),
      tableSource(db.source, { table: 'filtered', where: sql`id <= ${100}` }),
      copySource(db.source, { table: 'filtered', where: sql`id <= ${100}` }),
    ]
    for (const from of filters) {
      const { events } = await run(from)
      expect(events.at(-1)).toMatchObject({ final: true, rows: 100 })
      expect(events.every((event) => event.totalRows === undefined && event.percent === undefined)).toBe(true)
    }
  })

  it("sum a partitioned plan's pieces, and give none when a piece is read with a key filter", async () => {
    await db.sourceSql(`drop table if exists measures`)
    await db.sourceSql(`create table measures (id bigint, at date not null) partition by range (at)`)
    await db.sourceSql(`create table measures_1 partition of measures for values from ('2024-01-01') to ('2024-02-01') with (autovacuum_enabled = false)`)
    await db.sourceSql(`create table measures_2 partition of measures for values from ('2024-02-01') to ('2024-03-01') with (autovacuum_enabled = false)`)
    await db.sourceSql(`insert into measures select g, date '2024-01-01' + (g % 60) from generate_series(1, 6000) g`)
    await db.sourceSql(`analyze measures`)
    const whole = await run(partitionedSource(db.source, { table: 'measures' }))
    expect(whole.events[0]?.totalRows).toBe(6_000)
    expect(whole.events.at(-1)).toMatchObject({ final: true, rows: 6_000, percent: 100 })
    const part = await run(partitionedSource(db.source, { table: 'measures', from: '2024-01-15', to: '2024-02-01' }))
    expect(part.events.every((event) => event.totalRows === undefined)).toBe(true)
    expect(part.events.at(-1)?.final).toBe(true)
  })

  it("name the real bronze table in the run report's sink step, not a placeholder", async () => {
    await seed('named', 10, true)
    const { report } = await run(copySource(db.source, { table: 'named' }))
    expect(report.steps.at(-1)).toMatchObject({ step: 'sink', name: 'postgres bronze.br_named (replace)' })
  })
})
