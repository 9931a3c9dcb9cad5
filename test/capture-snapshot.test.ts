import { describe, expect, it } from 'vitest'
import { captureChanges, ConfigError, MissingPublicationError } from '../src/index.js'
import { ensurePublication, ensureSlot, lsnFromText, slotStatus, takeInitialSnapshot, type InitialSnapshotReport } from '../src/cdc.js'
import { ensureChangeLog } from '../src/cdc/change-log.js'
import { checksum } from './support/checksum.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('snapshot')

/**
 * Stops a capture shortly after its snapshot is done (a fixed timeout could end it mid-snapshot on a loaded machine),
 * or after 60 s whatever happens.
 */
function stopAfterSnapshot(): { signal: AbortSignal; soon: () => void } {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), 60_000)
  controller.signal.addEventListener('abort', () => clearTimeout(timer), { once: true })
  return { signal: controller.signal, soon: () => void setTimeout(() => controller.abort(), 300) }
}

/** Inserts new rows and updates old ones, one small transaction after another, until stopped. */
function startWriter(table: string, firstNewId: number): { stop: () => Promise<number> } {
  let running = true
  let next = firstNewId
  const done = (async () => {
    const client = await clientFor(db.sourceUrl)
    try {
      while (running) {
        await client.query(`insert into ${table} values ($1, 1, 'new')`, [next++])
        await client.query(`update ${table} set qty = qty + 1, note = 'changed' where id = $1`, [1 + ((next * 7919) % (next - 1))])
      }
    } finally {
      await client.end()
    }
  })()
  // stop() awaits it and rethrows its failure; until then a failed insert must not be an unhandled rejection.
  done.catch(() => undefined)
  return {
    stop: async () => {
      running = false
      await done
      return next
    },
  }
}

/** A capture with the initial snapshot while a writer runs; stopped 1 s after the writer stopped and all landed. */
async function snapshotAndCapture(slot: string, publication: string, table: string, apply: boolean): Promise<InitialSnapshotReport> {
  const writer = startWriter(table, 100_001)
  const controller = new AbortController()
  let snapshot: InitialSnapshotReport | undefined
  let writerStopped: Promise<number> | undefined
  let quiet: NodeJS.Timeout | undefined
  const capture = captureChanges(db.source, {
    slot,
    publication,
    to: db.warehouse,
    initialSnapshot: true,
    apply,
    maxBatchMs: 50,
    signal: controller.signal,
    onSnapshot: (report) => {
      snapshot = report
      // Writes go on for a while after the snapshot, then stop.
      setTimeout(() => {
        writerStopped = writer.stop()
        // Awaited in `finally` below, which reports its failure; until then it must not count as unhandled.
        writerStopped.catch(() => undefined)
      }, 500)
    },
    onBatch: () => {
      clearTimeout(quiet)
      if (writerStopped) quiet = setTimeout(() => controller.abort(), 1_000)
    },
  })
  const safety = setTimeout(() => controller.abort(), 30_000)
  try {
    await capture
  } finally {
    clearTimeout(safety)
    clearTimeout(quiet)
    await (writerStopped ?? writer.stop())
  }
  return snapshot as InitialSnapshotReport
}

describe('the initial snapshot hand-off', () => {
  it('copies the tables as of the slot’s snapshot and streams from its consistent point: no gap, no overlap, while writers run', async () => {
    await db.sourceSql(`create table orders (id int primary key, qty int not null, note text)`)
    await db.sourceSql(`insert into orders select g, 0, 'old' from generate_series(1, 5000) g`)
    await ensurePublication(db.source, 'pub_orders', [{ table: 'orders' }])
    const snapshot = await snapshotAndCapture('slot_orders', 'pub_orders', 'orders', false)
    expect(snapshot.tables).toEqual([{ schema: 'public', table: 'orders', rows: expect.any(Number) }])

    const [sets] = await db.warehouseSql(
      `
      with copied as (select id from bronze.br_orders),
           streamed as (select (data->>'id')::int as id from bronze.cdc_changes where table_name = 'orders' and operation = 'insert')
      select (select count(*) from copied)::int as copied,
             (select count(*) from streamed)::int as streamed,
             (select count(*) from copied join streamed using (id))::int as overlap,
             (select count(*) from bronze.cdc_changes where commit_lsn <= $1::pg_lsn)::int as before_consistent_point`,
      [snapshot.consistentPoint],
    )
    const [source] = await db.sourceSql(`select count(*)::int as n from orders`)
    expect(sets?.copied).toBe(snapshot.tables[0]?.rows)
    // Rows were written before and after the snapshot.
    expect(sets?.copied).toBeGreaterThan(5000)
    expect(sets?.streamed).toBeGreaterThan(0)
    // No overlap: nothing the snapshot holds was streamed again; no gap: together they are every row.
    expect(sets?.overlap).toBe(0)
    expect(sets?.before_consistent_point).toBe(0)
    expect((sets?.copied as number) + (sets?.streamed as number)).toBe(source?.n)
    // The snapshot's rows with the streamed changes replayed over them are the source.
    await db.warehouseSql(`
      create table replayed as
      with last as (
        select distinct on ((data->>'id')::int) (data->>'id')::int as id, (data->>'qty')::int as qty, data->>'note' as note
          from bronze.cdc_changes where table_name = 'orders' order by (data->>'id')::int, commit_lsn desc, seq desc)
      select id, qty, note from last
      union all select id, qty, note from bronze.br_orders b where not exists (select 1 from last where last.id = b.id)`)
    const columns = ['id', 'qty', 'note']
    expect(await checksum(db.warehouseDatabase, 'replayed', columns)).toEqual(await checksum(db.sourceDatabase, 'orders', columns))
    const [state] = await db.warehouseSql(`select initial_snapshot, last_commit_end_lsn::text as lsn from bronze.cdc_state where slot = 'slot_orders'`)
    expect(state?.initial_snapshot).toBe('done')
    expect(lsnFromText(state?.lsn as string).value).toBeGreaterThan(lsnFromText(snapshot.consistentPoint).value)
  })

  it('keeps bronze.br_<table> equal to the source from snapshot to stream (apply), and does not snapshot again on restart', async () => {
    await db.sourceSql(`create table stock (id int primary key, qty int not null, note text)`)
    await db.sourceSql(`insert into stock select g, 0, 'old' from generate_series(1, 3000) g`)
    await ensurePublication(db.source, 'pub_stock', [{ table: 'stock' }])
    await snapshotAndCapture('slot_stock', 'pub_stock', 'stock', true)
    const columns = ['id', 'qty', 'note']
    expect(await checksum(db.warehouseDatabase, 'bronze.br_stock', columns)).toEqual(await checksum(db.sourceDatabase, 'stock', columns))

    await db.sourceSql(`update stock set qty = -1 where id <= 10`)
    let snapshots = 0
    const controller = new AbortController()
    await captureChanges(db.source, {
      slot: 'slot_stock',
      publication: 'pub_stock',
      to: db.warehouse,
      initialSnapshot: true,
      apply: true,
      maxBatchMs: 50,
      signal: controller.signal,
      onSnapshot: () => snapshots++,
      onBatch: (batch) => batch.changes >= 10 && controller.abort(),
    })
    expect(snapshots).toBe(0)
    expect(await checksum(db.warehouseDatabase, 'bronze.br_stock', columns)).toEqual(await checksum(db.sourceDatabase, 'stock', columns))
  })

  it('redoes a snapshot that did not finish, and refuses a slot the warehouse knows nothing of', async () => {
    await db.sourceSql(`create table parts (id int primary key, qty int not null, note text)`)
    await db.sourceSql(`insert into parts select g, g, 'p' from generate_series(1, 100) g`)
    await ensurePublication(db.source, 'pub_parts', [{ table: 'parts' }])
    // A slot someone else made: lining a snapshot up with it is impossible.
    await ensureSlot(db.source, 'slot_parts')
    const attempt = () =>
      captureChanges(db.source, { slot: 'slot_parts', publication: 'pub_parts', to: db.warehouse, initialSnapshot: true, signal: AbortSignal.timeout(30_000) })
    await expect(attempt()).rejects.toThrow(ConfigError)
    await expect(attempt()).rejects.toThrow(/exists but the warehouse holds no position for it/)
    // What a run that died mid-copy leaves: its slot, and the attempt recorded as pending.
    await db.warehouseSql(`insert into bronze.cdc_state values ('slot_parts', '0/0', now(), 'pending')`)
    const before = await slotStatus(db.source, 'slot_parts')
    const stop = stopAfterSnapshot()
    let copied = 0
    await captureChanges(db.source, {
      slot: 'slot_parts',
      publication: 'pub_parts',
      to: db.warehouse,
      initialSnapshot: true,
      onSnapshot: (report) => {
        copied = report.tables[0]?.rows ?? 0
        stop.soon()
      },
      signal: stop.signal,
    })
    expect(copied).toBe(100)
    const after = await slotStatus(db.source, 'slot_parts')
    expect(lsnFromText(after?.confirmedFlushLsn ?? '0/0').value).toBeGreaterThan(lsnFromText(before?.confirmedFlushLsn ?? '0/0').value)
    const [state] = await db.warehouseSql(`select initial_snapshot from bronze.cdc_state where slot = 'slot_parts'`)
    expect(state?.initial_snapshot).toBe('done')
  })

  it('copies what the publication publishes: its column list and row filter', async () => {
    await db.sourceSql(`create table members (id int primary key, region text, secret text)`)
    await db.sourceSql(`insert into members select g, case when g % 2 = 0 then 'eu' else 'us' end, 'hidden' from generate_series(1, 40) g`)
    await db.sourceSql(`create publication pub_members for table members (id, region) where (region = 'eu')`)
    let report: InitialSnapshotReport | undefined
    const stop = stopAfterSnapshot()
    await captureChanges(db.source, {
      slot: 'slot_members',
      publication: 'pub_members',
      to: db.warehouse,
      initialSnapshot: true,
      onSnapshot: (snapshot) => {
        report = snapshot
        stop.soon()
      },
      signal: stop.signal,
    })
    expect(report?.tables).toEqual([{ schema: 'public', table: 'members', rows: 20 }])
    const columns = await db.warehouseSql(
      `select column_name from information_schema.columns where table_schema = 'bronze' and table_name = 'br_members' order by ordinal_position`,
    )
    expect(columns.map((column) => column.column_name)).toEqual([
      'id',
      'region',
      ...['_bronze_loaded_at', '_bronze_source', '_bronze_schema', '_bronze_table', '_bronze_extraction_type', '_bronze_lsn'],
    ])
    const [regions] = await db.warehouseSql(`select array_agg(distinct region) as regions from bronze.br_members`)
    expect(regions?.regions).toEqual(['eu'])
  })

  it('refuses to snapshot for a publication that does not exist, before making a slot', async () => {
    const writer = await db.warehouse.acquire()
    try {
      await ensureChangeLog(writer, 'bronze')
      await expect(takeInitialSnapshot(db.source, writer, { slot: 'slot_nopub', publication: 'no_such_pub', schema: 'bronze' })).rejects.toThrow(
        MissingPublicationError,
      )
    } finally {
      writer.release()
    }
    expect(await slotStatus(db.source, 'slot_nopub')).toBeUndefined()
  })
})
