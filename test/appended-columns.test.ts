import { describe, expect, it } from 'vitest'
import { bronzeMetadata, copySource, expandArrays, extract, memorySink, parseJsonb, postgresSink, type Transform } from '../src/index.js'
import { OID } from '../src/pg/types.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('appended')

/**
 * Appends `kind_of_doc`, read from parseJsonb's `doc_parsed`: a transform that reads a column an earlier fused one
 * added. Its `apply` throws, so a pipeline that ran it on its own (building its rows again) fails.
 */
const kindOfDoc: Transform = {
  name: 'kindOfDoc',
  shape: (shape) => ({ ...shape, columns: [...shape.columns, { name: 'kind_of_doc', type: 'text', typeOid: OID.text }] }),
  apply: () => {
    throw new Error('apply was called: the row was built again')
  },
  appendColumns: () => ({ reads: ['doc_parsed', 'id'], compute: ([doc, id]) => [`${(doc as { kind?: string } | null)?.kind ?? 'none'}:${String(id)}`] }),
}

describe('transforms that append columns, run as one step', () => {
  it('builds each row once with the columns of all of them, as running each alone gives', async () => {
    await db.sourceSql(`create table items (id bigint primary key, doc jsonb, tags text[], raw text)`)
    await db.sourceSql(`insert into items select g, jsonb_build_object('kind', 'k' || (g % 3), 'n', g),
      array['t' || g, null], case when g % 10 = 0 then '{bad' else '[1, {"a": 2}]' end from generate_series(1, 2500) g`)
    await db.sourceSql(`update items set doc = null where id = 7`)

    const fused = memorySink()
    const report = await extract({
      from: copySource(db.source, { table: 'items', batchSize: 700 }),
      through: [bronzeMetadata(), parseJsonb({ columns: ['doc', 'raw'] }), kindOfDoc, expandArrays({ mode: 'json' })],
      to: fused,
    })
    // The same transforms one at a time, each through its own apply (the direct use of a transform).
    const alone = memorySink()
    const separately: Transform[] = [bronzeMetadata(), parseJsonb({ columns: ['doc', 'raw'] }), expandArrays({ mode: 'json' })].map((transform) => ({
      name: transform.name,
      shape: (shape) => transform.shape(shape),
      apply: (batches, shape, ctx) => transform.apply(batches, shape, ctx),
    }))
    await extract({ from: copySource(db.source, { table: 'items', batchSize: 700 }), through: separately, to: alone })

    expect(fused.rows).toHaveLength(2500)
    const byId = (rows: readonly Record<string, unknown>[]) => new Map(rows.map((row) => [row.id, row]))
    const expected = byId(alone.rows)
    for (const row of fused.rows) {
      const { kind_of_doc: kind, _bronze_loaded_at: _at, ...rest } = row
      const { _bronze_loaded_at: _expectedAt, ...other } = expected.get(row.id) as Record<string, unknown>
      expect(rest).toEqual(other)
      const doc = row.doc_parsed as { kind: string } | null
      expect(kind).toBe(`${doc?.kind ?? 'none'}:${String(row.id)}`)
    }
    expect(Object.keys(fused.rows[0] as object)).toEqual([
      'id',
      'doc',
      'tags',
      'raw',
      '_bronze_loaded_at',
      '_bronze_source',
      '_bronze_schema',
      '_bronze_table',
      '_bronze_extraction_type',
      'doc_parsed',
      'raw_parsed',
      'kind_of_doc',
      'tags_expanded',
    ])
    // Counters and per-step reports are kept, each transform with its rows.
    expect(report.counters).toEqual({ 'parseJsonb.failed': 250 })
    expect(report.steps.map((step) => [step.name, step.rows])).toEqual([
      ['copy public.items', 2500],
      ['bronzeMetadata', 2500],
      ['parseJsonb', 2500],
      ['kindOfDoc', 2500],
      ['expandArrays', 2500],
      ['memory', 2500],
    ])
    expect(report.steps.every((step) => step.ms >= 0)).toBe(true)
  })

  it('lands the fused rows in bronze', async () => {
    const report = await extract({
      from: copySource(db.source, { table: 'items' }),
      through: [bronzeMetadata(), parseJsonb({ columns: ['doc', 'raw'] }), expandArrays({ mode: 'json' })],
      to: postgresSink(db.warehouse, { table: 'items_fused' }),
    })
    expect(report.path).toBe('rows')
    const [row] = await db.warehouseSql(
      `select count(*)::int as rows, count(*) filter (where doc_parsed = doc)::int as parsed,
              count(*) filter (where tags_expanded = to_jsonb(tags))::int as expanded, count(distinct _bronze_loaded_at)::int as runs
         from bronze.items_fused`,
    )
    expect(row).toEqual({ rows: 2500, parsed: 2499, expanded: 2500, runs: 1 })
  })
})
