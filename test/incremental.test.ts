import { describe, expect, it } from 'vitest'
import {
  bronzeMetadata,
  CheckpointConflictError,
  ConfigError,
  extract,
  incrementalSource,
  memoryCheckpoints,
  memorySink,
  postgresSink,
  UnknownColumnError,
  UnsupportedTypeError,
} from '../src/index.js'
import { checksum } from './support/checksum.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'
import { meetingPoint } from './support/transforms.js'

const db = useDatabases('incr')
const COLUMNS = ['id', 'status', 'amount', 'updated_at']

async function createOrders(table: string) {
  await db.sourceSql(`drop table if exists ${table}`)
  await db.sourceSql(`create table ${table} (id int primary key, status text, amount numeric(10,2), updated_at timestamptz)`)
}

/**
 * A run while a writer's transaction is open: the writer inserts a row stamped 00:10:30 (like now() at its start),
 * another transaction commits a row stamped 00:11:00, a run reads, then the writer commits and a second run reads.
 * Returns what each of the two runs read.
 */
async function runAcrossOpenTransaction(table: string, capInFlight: boolean): Promise<[number, number]> {
  await createOrders(table)
  await db.sourceSql(`insert into ${table} select g, 'new', g, '2024-01-01'::timestamptz + g * interval '1 minute' from generate_series(1, 10) g`)
  const source = incrementalSource(db.source, { table, cursorColumn: 'updated_at', capInFlight })
  const merge = postgresSink(db.warehouse, { mode: 'merge' })
  await extract({ from: source, to: merge })
  const writer = await clientFor(db.sourceUrl)
  try {
    await writer.query('begin')
    await writer.query(`insert into ${table} values (11, 'slow', 11, '2024-01-01 00:10:30+00')`)
    await db.sourceSql(`insert into ${table} values (12, 'fast', 12, '2024-01-01 00:11:00+00')`)
    const during = await extract({ from: source, to: merge })
    await writer.query('commit')
    const after = await extract({ from: source, to: merge })
    return [during.rows, after.rows]
  } finally {
    await writer.end()
  }
}

describe('incrementalSource', () => {
  it('three runs with inserts and updates between them land exactly the changed rows', async () => {
    await createOrders('orders')
    await db.sourceSql(`insert into orders select g, 'new', g, '2024-01-01'::timestamptz + g * interval '1 minute' from generate_series(1, 100) g`)
    const source = incrementalSource(db.source, { table: 'orders', cursorColumn: 'updated_at' })
    const append = postgresSink(db.warehouse, { mode: 'append' })

    const first = await extract({ from: source, through: [bronzeMetadata()], to: append })
    expect(first.rows).toBe(100)
    expect(first.checkpoint).toMatchObject({ previous: null, lower: null, value: '2024-01-01 01:40:00+00' })

    await db.sourceSql(`insert into orders select g, 'new', g, '2024-01-02'::timestamptz + g * interval '1 minute' from generate_series(101, 110) g`)
    await db.sourceSql(`update orders set status = 'paid', updated_at = '2024-01-03' where id in (5, 6, 7)`)
    const second = await extract({ from: source, through: [bronzeMetadata()], to: append })
    expect(second.rows).toBe(13)
    expect(second.checkpoint).toMatchObject({ previous: '2024-01-01 01:40:00+00', value: '2024-01-03 00:00:00+00' })

    const third = await extract({ from: source, through: [bronzeMetadata()], to: append })
    expect(third.rows).toBe(0)

    await db.sourceSql(`update orders set status = 'shipped', updated_at = '2024-01-04' where id = 5`)
    const fourth = await extract({ from: source, through: [bronzeMetadata()], to: append })
    expect(fourth.rows).toBe(1)

    // Append keeps every version, labelled with the checkpoint of the run that loaded it.
    expect(
      await db.warehouseSql(
        `select _bronze_checkpoint as checkpoint, _bronze_extraction_type as type, count(*)::int as n
           from bronze.br_orders group by 1, 2 order by 1`,
      ),
    ).toEqual([
      { checkpoint: '2024-01-01 01:40:00+00', type: 'incremental', n: 100 },
      { checkpoint: '2024-01-03 00:00:00+00', type: 'incremental', n: 13 },
      { checkpoint: '2024-01-04 00:00:00+00', type: 'incremental', n: 1 },
    ])
    expect(await db.warehouseSql(`select status from bronze.br_orders where id = 5 order by _bronze_checkpoint`)).toEqual([
      { status: 'new' },
      { status: 'paid' },
      { status: 'shipped' },
    ])
    // The checkpoint is a row in the warehouse, committed with the data.
    expect(
      await db.warehouseSql(`select cursor_column, cursor_value, rows::int, status from bronze.extraction_checkpoints where table_name = 'orders'`),
    ).toEqual([{ cursor_column: 'updated_at', cursor_value: '2024-01-04 00:00:00+00', rows: 1, status: 'committed' }])
  })

  it('merges by primary key so that the lookback overlap leaves no duplicate, and bronze equals the source', async () => {
    await createOrders('merged')
    await db.sourceSql(`insert into merged select g, 'new', g, '2024-01-01'::timestamptz + g * interval '1 second' from generate_series(1, 1000) g`)
    const source = incrementalSource(db.source, { table: 'merged', cursorColumn: 'updated_at', lookback: '1 hour' })
    const merge = postgresSink(db.warehouse, { mode: 'merge' })
    await extract({ from: source, to: merge })
    await db.sourceSql(`update merged set status = 'paid', updated_at = updated_at + interval '10 minutes' where id % 10 = 0`)
    await db.sourceSql(`insert into merged select g, 'late', g, '2024-01-01 00:05:00+00' from generate_series(1001, 1010) g`)
    await extract({ from: source, to: merge })
    await extract({ from: source, to: merge })
    expect(await checksum(db.warehouseDatabase, 'bronze.br_merged', COLUMNS)).toEqual(await checksum(db.sourceDatabase, 'merged', COLUMNS))
  })

  it('picks up, in the next run, a transaction that was still open when a run read its bounds', async () => {
    // Capped below the open transaction's rows, the first run does not move past them.
    expect(await runAcrossOpenTransaction('concurrent', true)).toEqual([0, 2])
    expect(await db.warehouseSql(`select id from bronze.br_concurrent where id > 10 order by id`)).toEqual([{ id: 11 }, { id: 12 }])
    expect(await checksum(db.warehouseDatabase, 'bronze.br_concurrent', COLUMNS)).toEqual(await checksum(db.sourceDatabase, 'concurrent', COLUMNS))
  })

  it('is not held back by a write transaction open in another database of the same server', async () => {
    await createOrders('elsewhere')
    // A transaction in another database takes an xid first; the rows are committed after it, so they are younger.
    const other = await clientFor(db.warehouseUrl)
    try {
      await other.query('begin')
      await other.query('create temp table holds_an_xid (x int)')
      await other.query('insert into holds_an_xid values (1)')
      await db.sourceSql(`insert into elsewhere select g, 'new', g, '2024-01-01'::timestamptz + g * interval '1 minute' from generate_series(1, 10) g`)
      const report = await extract({
        from: incrementalSource(db.source, { table: 'elsewhere', cursorColumn: 'updated_at' }),
        to: postgresSink(db.warehouse, { mode: 'merge' }),
      })
      expect(report.rows).toBe(10)
    } finally {
      await other.query('rollback')
      await other.end()
    }
  })

  it('without the in-flight cap, the same open transaction is lost (why the cap is on by default)', async () => {
    expect(await runAcrossOpenTransaction('uncapped', false)).toEqual([1, 0])
    expect(await db.warehouseSql(`select count(*)::int as n from bronze.br_uncapped where id = 11`)).toEqual([{ n: 0 }])
  })

  it('delivers rows with a NULL cursor once, and again when they change', async () => {
    await createOrders('nulls')
    await db.sourceSql(`insert into nulls values (1, 'a', 1, null), (2, 'b', 2, '2024-01-01')`)
    const source = incrementalSource(db.source, { table: 'nulls', cursorColumn: 'updated_at' })
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    expect((await extract({ from: source, to: sink })).rows).toBe(2)
    expect((await extract({ from: source, to: sink })).rows).toBe(0)
    await db.sourceSql(`update nulls set status = 'changed' where id = 1`)
    expect((await extract({ from: source, to: sink })).rows).toBe(1)
  })

  it('works with integer cursors and a numeric lookback, with checkpoints kept elsewhere', async () => {
    await db.sourceSql(`create table events (seq bigint primary key, kind text)`)
    await db.sourceSql(`insert into events select g, 'k' || g from generate_series(1, 50) g`)
    const store = memoryCheckpoints()
    const source = incrementalSource(db.source, { table: 'events', cursorColumn: 'seq', lookback: 5, checkpoints: store })
    const sink = memorySink()
    expect((await extract({ from: source, to: sink })).checkpoint).toMatchObject({ value: '50', store: 'memory checkpoints' })
    await db.sourceSql(`insert into events select g, 'k' || g from generate_series(51, 60) g`)
    const report = await extract({ from: source, to: sink })
    // The lookback re-reads 46..50, but those rows were delivered by the previous run in its snapshot: skipped.
    expect(sink.rows.map((row) => Number(row.seq))).toEqual([51, 52, 53, 54, 55, 56, 57, 58, 59, 60])
    expect(report.checkpoint).toMatchObject({ previous: '50', lower: '45', value: '60' })
  })

  it('refuses an unknown cursor column, a cursor without ordering, a bad lookback and a sink without checkpoints, before writing', async () => {
    await db.sourceSql(`create table shapes (id int primary key, doc json, at timestamptz)`)
    const attempt = (options: Parameters<typeof incrementalSource>[1], sink = postgresSink(db.warehouse, { mode: 'append' })) =>
      extract({ from: incrementalSource(db.source, options), to: sink }).catch((error: unknown) => error)
    expect(await attempt({ table: 'shapes', cursorColumn: 'nope' })).toBeInstanceOf(UnknownColumnError)
    expect(await attempt({ table: 'shapes', cursorColumn: 'doc' })).toBeInstanceOf(UnsupportedTypeError)
    expect(await attempt({ table: 'shapes', cursorColumn: 'at', lookback: 5 })).toBeInstanceOf(ConfigError)
    expect(await attempt({ table: 'shapes', cursorColumn: 'at', lookback: 'a fortnight-ish' })).toBeInstanceOf(ConfigError)
    expect(await attempt({ table: 'shapes', cursorColumn: 'at' }, memorySink() as never)).toBeInstanceOf(ConfigError)
    expect(await db.warehouseSql(`select to_regclass('bronze.br_shapes') is null as absent`)).toEqual([{ absent: true }])
  })

  it('detects two runs of one extraction racing: the second to commit fails and writes nothing', async () => {
    await createOrders('raced')
    await db.sourceSql(`insert into raced values (1, 'a', 1, '2024-01-01')`)
    const source = incrementalSource(db.source, { table: 'raced', cursorColumn: 'updated_at' })
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    await extract({ from: source, to: sink })
    await db.sourceSql(`insert into raced values (2, 'b', 2, '2024-01-02')`)
    // Both runs hold their first batch until both have one: each has read the old checkpoint before either commits,
    // however the machine schedules them.
    const meet = meetingPoint(2)
    const run = () => extract({ from: source, through: [meet], to: sink, retry: false })
    const results = await Promise.allSettled([run(), run()])
    const failures = results.filter((result) => result.status === 'rejected').map((result) => result.reason)
    expect(failures).toHaveLength(1)
    expect(failures[0]).toBeInstanceOf(CheckpointConflictError)
    expect(await db.warehouseSql(`select count(*)::int as n from bronze.br_raced`)).toEqual([{ n: 2 }])
  })
})
