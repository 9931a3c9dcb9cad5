import { describe, expect, it, vi } from 'vitest'
import {
  bronzeMetadata,
  connect,
  extract,
  memorySink,
  NotPartitionedError,
  parallelSource,
  partitionedSource,
  PartitionsChangedError,
  postgresSink,
} from '../src/index.js'
import { parsePartitionBound } from '../src/pg.js'
import { checksum } from './support/checksum.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('parts')

describe('partition bounds', () => {
  it('parses range, list, hash and default bounds as pg_get_expr prints them', () => {
    expect(parsePartitionBound(`FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00')`)).toEqual({
      kind: 'range',
      from: [{ value: '2024-01-01 00:00:00+00' }],
      to: [{ value: '2024-02-01 00:00:00+00' }],
    })
    expect(parsePartitionBound(`FOR VALUES FROM (MINVALUE, 1) TO (10, MAXVALUE)`)).toEqual({
      kind: 'range',
      from: ['MINVALUE', { value: '1' }],
      to: [{ value: '10' }, 'MAXVALUE'],
    })
    expect(parsePartitionBound(`FOR VALUES IN ('eu', 'it''s, odd', NULL)`)).toEqual({ kind: 'list', values: ['eu', "it's, odd", null] })
    expect(parsePartitionBound('FOR VALUES WITH (modulus 4, remainder 3)')).toEqual({ kind: 'hash', modulus: 4, remainder: 3 })
    expect(parsePartitionBound('DEFAULT')).toEqual({ kind: 'default' })
  })
})

async function createMeasurements() {
  // Range by month at the top; March is sub-partitioned by region (list, with its own default); a default partition.
  await db.sourceSql(`create table measurements (id bigint, at timestamptz not null, region text not null, value numeric) partition by range (at)`)
  await db.sourceSql(`create table m_2024_01 partition of measurements for values from ('2024-01-01') to ('2024-02-01')`)
  await db.sourceSql(`create table m_2024_02 partition of measurements for values from ('2024-02-01') to ('2024-03-01')`)
  await db.sourceSql(`create table m_2024_03 partition of measurements for values from ('2024-03-01') to ('2024-04-01') partition by list (region)`)
  await db.sourceSql(`create table m_2024_03_eu partition of m_2024_03 for values in ('eu')`)
  await db.sourceSql(`create table m_2024_03_other partition of m_2024_03 default`)
  await db.sourceSql(`create table m_default partition of measurements default`)
  await db.sourceSql(
    `insert into measurements
     select g, '2023-12-15'::timestamptz + (g % 130) * interval '1 day' + (g % 24) * interval '1 hour',
            case when g % 3 = 0 then 'eu' else 'us' end, g * 1.5
       from generate_series(1, 20000) g`,
  )
}

describe('partitionedSource', () => {
  it('reads multi-level trees and the default partition, tagging rows with their partition', async () => {
    await createMeasurements()
    const source = partitionedSource(db.source, { table: 'measurements', concurrency: 2 })
    const plan = await source.plan()
    expect(plan.pieces.map((piece) => piece.partition).sort()).toEqual(
      ['public.m_2024_01', 'public.m_2024_02', 'public.m_2024_03_eu', 'public.m_2024_03_other', 'public.m_default'].sort(),
    )
    // The plan is plain JSON.
    expect(JSON.parse(JSON.stringify(plan))).toEqual(plan)
    const report = await extract({ from: source, through: [bronzeMetadata()], to: postgresSink(db.warehouse) })
    expect(report.path).toBe('copy-bytes')
    expect(report.rows).toBe(20000)
    const columns = ['id', 'at', 'region', 'value']
    expect(await checksum(db.warehouseDatabase, 'bronze.br_measurements', columns)).toEqual(await checksum(db.sourceDatabase, 'measurements', columns))
    const tags = await db.warehouseSql(
      `select _bronze_partition as partition, min(_bronze_parent_table) as parent, count(*)::int as n, min(_bronze_extraction_type) as type
         from bronze.br_measurements group by 1 order by 1`,
    )
    const truth = await db.sourceSql(`select 'public.' || tableoid::regclass::text as partition, count(*)::int as n from measurements group by 1 order by 1`)
    expect(tags.map(({ partition, n }) => ({ partition, n }))).toEqual(truth)
    expect(tags.map(({ parent, type }) => ({ parent, type }))).toEqual(tags.map(() => ({ parent: 'public.measurements', type: 'partition' })))
  })

  it('keeps exactly the partitions that intersect the range, filtering those only partly inside', async () => {
    const source = partitionedSource(db.source, { table: 'measurements', from: '2024-01-15', to: '2024-03-01' })
    const plan = await source.plan()
    const pieces = Object.fromEntries(plan.pieces.map((piece) => [piece.partition, piece.filter ? 'filtered' : 'whole']))
    expect(pieces).toEqual({ 'public.m_2024_01': 'filtered', 'public.m_2024_02': 'whole', 'public.m_default': 'filtered' })
    const sink = memorySink()
    await extract({ from: source, to: sink })
    const [expected] = await db.sourceSql(`select count(*)::int as n from measurements where at >= '2024-01-15' and at < '2024-03-01'`)
    expect(sink.rows).toHaveLength(expected?.n as number)
    expect(sink.rows.every((row) => String(row.at) >= '2024-01-15' && String(row.at) < '2024-03-01')).toBe(true)

    const march = await partitionedSource(db.source, { table: 'measurements', from: '2024-03-01', to: '2024-04-01' }).plan()
    expect(march.pieces.map((piece) => `${piece.partition}:${piece.filter ? 'filtered' : 'whole'}`).sort()).toEqual([
      'public.m_2024_03_eu:whole',
      'public.m_2024_03_other:whole',
      'public.m_default:filtered',
    ])
  })

  it('fails clearly when a partition is attached or detached between plan and run', async () => {
    const source = partitionedSource(db.source, { table: 'measurements' })
    const plan = await source.plan()
    await db.sourceSql(`alter table measurements detach partition m_2024_02`)
    try {
      const failure = await extract({ from: partitionedSource(db.source, { table: 'measurements', plan }), to: memorySink() }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(PartitionsChangedError)
      expect((failure as Error).message).toMatch(/detached: public\.m_2024_02/)
    } finally {
      await db.sourceSql(`alter table measurements attach partition m_2024_02 for values from ('2024-02-01') to ('2024-03-01')`)
    }
    await db.sourceSql(`create table m_2025 partition of measurements for values from ('2025-01-01') to ('2026-01-01')`)
    const attached = await extract({ from: partitionedSource(db.source, { table: 'measurements', plan }), to: memorySink() }).catch((error: unknown) => error)
    expect(attached).toBeInstanceOf(PartitionsChangedError)
    expect((attached as Error).message).toMatch(/attached: public\.m_2025/)
    // No connection is left checked out.
    await vi.waitFor(() => expect(db.source.stats().total - db.source.stats().idle).toBe(0))
  })

  it('refuses a table that is not partitioned', async () => {
    await db.sourceSql(`create table plain (id int)`)
    await expect(extract({ from: partitionedSource(db.source, { table: 'plain' }), to: memorySink() })).rejects.toBeInstanceOf(NotPartitionedError)
  })
})

describe('parallelSource', () => {
  it('reads a plain table in page ranges on several connections and loses nothing', async () => {
    await db.sourceSql(`create table big (id int primary key, payload text)`)
    await db.sourceSql(`insert into big select g, repeat(md5(g::text), 3) from generate_series(1, 50000) g`)
    const source = parallelSource(db.source, { table: 'big', concurrency: 3, pieces: 7 })
    const plan = await source.plan()
    expect(plan.pieces).toHaveLength(7)
    expect(plan.pieces.at(-1)?.pages?.to).toBeNull()
    await extract({ from: source, through: [bronzeMetadata()], to: postgresSink(db.warehouse) })
    expect(await checksum(db.warehouseDatabase, 'bronze.br_big', ['id', 'payload'])).toEqual(await checksum(db.sourceDatabase, 'big', ['id', 'payload']))
  })

  it('leaving a parallel read early (break or abort) gives every connection back and leaves no COPY running', async () => {
    await db.sourceSql(`create table early (id int primary key, payload text)`)
    await db.sourceSql(`insert into early select g, repeat(md5(g::text), 8) from generate_series(1, 200000) g`)
    const source = connect({ url: db.sourceUrl, pool: { max: 4 }, applicationName: 'pgdk-early' })
    const copies = async () =>
      (
        await db.sourceSql(`select count(*)::int as n from pg_stat_activity where application_name = 'pgdk-early' and query ilike 'copy%' and state = 'active'`)
      )[0]?.n
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const reader = parallelSource(source, { table: 'early', concurrency: 2, pieces: 6 })
        let chunks = 0
        for await (const chunk of reader.copyText?.() ?? []) {
          chunks += chunk.length > 0 ? 1 : 0
          // Both workers are in their COPY (held back by the unread chunks) when the loop is left.
          await vi.waitFor(async () => expect(await copies()).toBe(2), { timeout: 10_000 })
          break
        }
        expect(chunks).toBe(1)
        await vi.waitFor(() => expect(source.stats().total - source.stats().idle).toBe(0), { timeout: 10_000 })
        await vi.waitFor(async () => expect(await copies()).toBe(0), { timeout: 10_000 })
      }
      const controller = new AbortController()
      const aborted = await extract({
        from: parallelSource(source, { table: 'early', concurrency: 2, pieces: 6 }),
        to: memorySink(),
        signal: controller.signal,
        onProgress: (event) => {
          if (event.rows > 0) controller.abort()
        },
      }).catch((error: unknown) => error)
      expect((aborted as Error).name).toBe('AbortedError')
      await vi.waitFor(() => expect(source.stats().total - source.stats().idle).toBe(0), { timeout: 10_000 })
      await vi.waitFor(async () => expect(await copies()).toBe(0), { timeout: 10_000 })
      // The pool still works: a whole read afterwards lands every row.
      const sink = memorySink()
      await extract({ from: parallelSource(source, { table: 'early', concurrency: 2, pieces: 6 }), to: sink })
      expect(sink.rows).toHaveLength(200000)
    } finally {
      await source.close()
    }
  })

  it('sees one point in time while a writer inserts and deletes during the read', async () => {
    await db.sourceSql(`create table moving (id int primary key, grp int not null)`)
    await db.sourceSql(`insert into moving select g, g % 10 from generate_series(1, 100000) g`)
    const writer = await clientFor(db.sourceUrl)
    const observer = await clientFor(db.sourceUrl)
    let snapshotCount: number | undefined
    let writes = 0
    const source = connect({ url: db.sourceUrl, pool: { max: 4 } })
    try {
      // Each writer transaction moves a whole group: deletes it and inserts it again under new ids, keeping the
      // row count. A result that mixes two instants shows a count other than 100000 or a group of the wrong size.
      let stop = false
      const writing = (async () => {
        let next = 1_000_000
        while (!stop) {
          const group = writes % 10
          await writer.query('begin')
          const moved = await writer.query(`delete from moving where grp = $1 returning id`, [group])
          await writer.query(`insert into moving select g, $1 from generate_series($2::int, $3::int) g`, [group, next, next + (moved.rowCount ?? 0) - 1])
          await writer.query('commit')
          next += moved.rowCount ?? 0
          writes++
        }
      })()
      const sink = memorySink()
      await extract({
        from: parallelSource(source, { table: 'moving', concurrency: 3, pieces: 12, batchSize: 500 }),
        through: [
          {
            name: 'slow',
            shape: (shape) => shape,
            async *apply(batches) {
              for await (const batch of batches) {
                await new Promise((resolve) => setTimeout(resolve, 2))
                yield batch
              }
            },
          },
        ],
        to: sink,
      })
      stop = true
      await writing
      snapshotCount = sink.rows.length
      const groups = new Map<number, number>()
      for (const row of sink.rows) groups.set(row.grp as number, (groups.get(row.grp as number) ?? 0) + 1)
      expect(writes).toBeGreaterThan(3)
      expect(snapshotCount).toBe(100000)
      expect([...groups.values()]).toEqual(Array(10).fill(10000))
      expect(new Set(sink.rows.map((row) => row.id)).size).toBe(100000)
    } finally {
      await writer.end()
      await observer.end()
      await source.close()
    }
  })
})
