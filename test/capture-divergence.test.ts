import { describe, expect, it } from 'vitest'
import { captureChanges, PublicationChangedError, SlotAheadError, SlotMissingError, type CaptureOptions } from '../src/index.js'
import { ensurePublication, slotStatus } from '../src/cdc.js'
import { captureUntil } from './support/capture.js'
import { checksum } from './support/checksum.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'
import { publishedTables, rewrittenSinceSnapshot } from '../src/cdc/table-snapshot.js'

const db = useDatabases('diverge')

function capture(slot: string, publication: string, options: { changes?: number; apply?: boolean; firstMs?: number } = {}) {
  return captureUntil({ source: db.source, warehouse: db.warehouse, slot, publication, firstMs: 1_500, idleMs: 1_500, ...options })
}

/** A capture that must refuse to start: it is given 30 s, then aborted (so a capture that streams instead fails the test). */
async function refusal(options: Omit<CaptureOptions, 'to' | 'signal'>): Promise<unknown> {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), 30_000)
  try {
    await captureChanges(db.source, { ...options, to: db.warehouse, signal: controller.signal })
    return undefined
  } catch (error) {
    return error
  } finally {
    clearTimeout(timer)
  }
}

async function position(slot: string): Promise<string | undefined> {
  const rows = await db.warehouseSql('select last_commit_end_lsn::text as lsn from bronze.cdc_state where slot = $1', [slot])
  return rows[0]?.lsn as string | undefined
}

describe('a capture never continues past a gap', () => {
  it('stops with SlotMissingError when the slot it streamed from is gone, and re-snapshots only when told to', async () => {
    await db.sourceSql('create table lost_items (id int primary key, note text)')
    await ensurePublication(db.source, 'lost_pub', [{ table: 'lost_items' }])
    await capture('lost_slot', 'lost_pub', { apply: true })
    await db.sourceSql(`insert into lost_items select g, 'first ' || g from generate_series(1, 10) g`)
    await capture('lost_slot', 'lost_pub', { apply: true, changes: 10 })
    const held = await position('lost_slot')
    // An operator drops the slot (or a failover loses it); writes go on.
    await db.sourceSql(`select pg_drop_replication_slot('lost_slot')`)
    await db.sourceSql(`insert into lost_items select g, 'meanwhile ' || g from generate_series(11, 35) g`)
    await db.sourceSql(`update lost_items set note = 'changed' where id <= 3`)

    const error = await refusal({ slot: 'lost_slot', publication: 'lost_pub', apply: true })
    expect(error).toBeInstanceOf(SlotMissingError)
    expect((error as Error).message).toMatch(/lost_slot.*slotLost: 'resnapshot'/s)
    // Nothing moved: no slot was made behind the warehouse's back, its position stands.
    expect(await slotStatus(db.source, 'lost_slot')).toBeUndefined()
    expect(await position('lost_slot')).toBe(held)

    await captureUntil({
      source: db.source,
      warehouse: db.warehouse,
      slot: 'lost_slot',
      publication: 'lost_pub',
      apply: true,
      firstMs: 3_000,
      idleMs: 1_500,
      ...{},
    })
      .catch((e) => e)
      .then((e) => expect(e).toBeInstanceOf(SlotMissingError))
    const controller = new AbortController()
    let snapshotRows = 0
    const run = captureChanges(db.source, {
      slot: 'lost_slot',
      publication: 'lost_pub',
      to: db.warehouse,
      apply: true,
      slotLost: 'resnapshot',
      maxBatchMs: 50,
      signal: controller.signal,
      // Awaited by the capture: a failed update stops it with that error (it was an unhandled rejection, and the
      // capture then ran until the test's timeout).
      onSnapshot: async (snapshot) => {
        snapshotRows = snapshot.tables.reduce((sum, table) => sum + table.rows, 0)
        await db.sourceSql(`update lost_items set note = 'after' where id = 35`)
        setTimeout(() => controller.abort(), 1_500)
      },
    })
    await run
    expect(snapshotRows).toBe(35)
    expect(await checksum(db.warehouseDatabase, 'bronze.br_lost_items', ['id', 'note'])).toEqual(
      await checksum(db.sourceDatabase, 'lost_items', ['id', 'note']),
    )
  })

  it('stops with SlotMissingError when a slot it made is dropped before any change landed', async () => {
    await db.sourceSql('create table early_items (id int primary key)')
    await ensurePublication(db.source, 'early_pub', [{ table: 'early_items' }])
    await capture('early_slot', 'early_pub')
    expect(await slotStatus(db.source, 'early_slot')).toBeDefined()
    await db.sourceSql(`insert into early_items select generate_series(1, 5)`)
    await db.sourceSql(`select pg_drop_replication_slot('early_slot')`)
    expect(await refusal({ slot: 'early_slot', publication: 'early_pub' })).toBeInstanceOf(SlotMissingError)
  })

  it('stops with SlotAheadError when the warehouse lost commits the slot had confirmed', async () => {
    await db.sourceSql('create table ahead_items (id int primary key, qty int)')
    await ensurePublication(db.source, 'ahead_pub', [{ table: 'ahead_items' }])
    await capture('ahead_slot', 'ahead_pub')
    await db.sourceSql(`insert into ahead_items select generate_series(1, 10), 0`)
    await capture('ahead_slot', 'ahead_pub', { changes: 10 })
    const first = await position('ahead_slot')
    for (let round = 0; round < 3; round++) await db.sourceSql(`update ahead_items set qty = qty + 1`)
    await capture('ahead_slot', 'ahead_pub', { changes: 30 })
    // A warehouse crash with synchronous_commit = off loses its last acknowledged commits: position and rows go back.
    await db.warehouseSql(`delete from bronze.cdc_changes where commit_lsn > $1::pg_lsn`, [first])
    await db.warehouseSql(`update bronze.cdc_state set last_commit_end_lsn = $1 where slot = 'ahead_slot'`, [first])
    const error = await refusal({ slot: 'ahead_slot', publication: 'ahead_pub' })
    expect(error).toBeInstanceOf(SlotAheadError)
    expect((error as SlotAheadError).context).toMatchObject({ slot: 'ahead_slot', position: first })
    expect(await db.warehouseSql(`select count(*)::int as n from bronze.cdc_changes where table_name = 'ahead_items'`)).toEqual([{ n: 10 }])
  })

  it('lands dates, intervals, floats and bytea exactly whatever DateStyle, IntervalStyle, extra_float_digits and bytea_output the source database sets', async () => {
    await db.sourceSql(`create table styled (id int primary key, d date, ts timestamp, tz timestamptz, iv interval, f float8, r real, b bytea)`)
    await ensurePublication(db.source, 'styled_pub', [{ table: 'styled' }])
    await capture('styled_slot', 'styled_pub', { apply: true })
    const settings = [
      `DateStyle = 'SQL, DMY'`,
      `IntervalStyle = 'sql_standard'`,
      `extra_float_digits = -3`,
      `bytea_output = 'escape'`,
      `TimeZone = 'Asia/Kolkata'`,
    ]
    for (const setting of settings) await db.sourceSql(`alter database "${db.sourceDatabase}" set ${setting}`)
    try {
      await db.sourceSql(`insert into styled values
        (1, '2024-03-04', '2024-03-04 05:06:07.123456', '2024-03-04 05:06:07.5+00', '1 year -2 months 3 days -04:05:06.5', 0.30000000000000004, 1.1754944e-38, '\\x00ff5c0a'),
        (2, '0044-12-11 BC', '2024-12-01 00:00:00', 'infinity', '-1 day +02:00:00', 1e-300, 3.4028235e38, '\\x'),
        (3, null, null, null, '00:00:00.000001', 'NaN', '-Infinity', '\\x5c5c')`)
      await db.sourceSql(`update styled set f = f * 3 where id = 1`)
      await capture('styled_slot', 'styled_pub', { apply: true, changes: 4 })
    } finally {
      for (const setting of settings) await db.sourceSql(`alter database "${db.sourceDatabase}" reset ${setting.split(' ')[0]}`)
    }
    // Compared as text under one set of settings on both sides.
    const read = async (url: string, table: string) => {
      const client = await clientFor(url)
      try {
        await client.query(
          `set DateStyle = 'ISO, MDY'; set IntervalStyle = 'postgres'; set extra_float_digits = 1; set bytea_output = 'hex'; set TimeZone = 'UTC'`,
        )
        return (await client.query(`select id, d::text, ts::text, tz::text, iv::text, f::text, r::text, b::text from ${table} order by id`)).rows
      } finally {
        await client.end()
      }
    }
    const source = await read(db.sourceUrl, 'styled')
    expect(source[0]).toMatchObject({ d: '2024-03-04', iv: '10 mons 3 days -04:05:06.5', f: '0.9000000000000001', b: '\\x00ff5c0a' })
    expect(await read(db.warehouseUrl, 'bronze.br_styled')).toEqual(source)
  })

  it('follows ADD COLUMN (constant and volatile defaults), a wider type and a dropped column into bronze with apply, and restarts cleanly', async () => {
    await db.sourceSql(`create domain positive_qty as int check (value > 0)`)
    await db.sourceSql('create table evolving (id int primary key, a int)')
    await db.sourceSql(`insert into evolving select g, g from generate_series(1, 20) g`)
    await ensurePublication(db.source, 'evolving_pub', [{ table: 'evolving' }])
    const run = (changes: number) =>
      captureUntil({
        source: db.source,
        warehouse: db.warehouse,
        slot: 'evolving_slot',
        publication: 'evolving_pub',
        apply: true,
        changes,
        firstMs: 10_000,
        idleMs: 1_500,
        initialSnapshot: true,
      })
    const same = async (columns: string[]) =>
      expect(await checksum(db.warehouseDatabase, 'bronze.br_evolving', columns)).toEqual(await checksum(db.sourceDatabase, 'evolving', columns))
    const reason = async () => (await db.warehouseSql(`select reason from bronze.cdc_tables where table_name = 'evolving'`))[0]?.reason
    await run(0)
    await db.sourceSql(`update evolving set a = -a where id <= 2`)
    await db.sourceSql(`begin;
      alter table evolving add column b text default 'filled', add column c numeric(10,2);
      insert into evolving values (21, 21, 'new', 1.25);
      update evolving set c = id / 4.0 where id <= 5;
      commit`)
    await run(2 + 1 + 5)
    // Rows that predate ADD COLUMN ... DEFAULT 'filled' hold it without any change sent: bronze has it from the catalog.
    await same(['id', 'a', 'b', 'c'])
    expect(await reason()).toBe('table changed')

    // A domain with a CHECK makes ADD COLUMN scan the table; its rows hold NULL there.
    await db.sourceSql(`alter table evolving add column d positive_qty`)
    await db.sourceSql(`update evolving set d = id where id <= 5`)
    await db.sourceSql(`alter table evolving alter column a type bigint`)
    await db.sourceSql(`insert into evolving (id, a, b) values (22, 1099511627776, 'wide')`)
    // A volatile default rewrites the table: every old row gets its own value, which only a copy of the table brings.
    await db.sourceSql(`alter table evolving add column e text default md5(random()::text)`)
    await db.sourceSql(`alter table evolving drop column c`)
    await db.sourceSql(`insert into evolving (id, a, b, d) values (23, 3, 'after drop', 3)`)
    await db.sourceSql(`update evolving set b = 'late' where id = 2`)
    await run(5 + 3)
    const columns = await db.warehouseSql(
      `select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute where attrelid = 'bronze.br_evolving'::regclass and attnum > 0 and not attisdropped order by attnum`,
    )
    expect(columns).toEqual([
      { name: 'id', type: 'integer' },
      { name: 'a', type: 'bigint' },
      // The lineage columns follow the columns bronze was made with; later ones are added after them.
      { name: '_bronze_loaded_at', type: 'timestamp with time zone' },
      { name: '_bronze_source', type: 'text' },
      { name: '_bronze_schema', type: 'text' },
      { name: '_bronze_table', type: 'text' },
      { name: '_bronze_extraction_type', type: 'text' },
      { name: '_bronze_lsn', type: 'pg_lsn' },
      { name: 'b', type: 'text' },
      { name: 'c', type: 'numeric(10,2)' },
      { name: 'd', type: 'integer' },
      { name: 'e', type: 'text' },
    ])
    await same(['id', 'a', 'b', 'd', 'e'])
    expect(await reason()).toBe('table changed')
    await db.sourceSql(`insert into evolving (id, a, b, d) values (24, 4, 'restart', 4)`)
    await run(1)
    await same(['id', 'a', 'b', 'd', 'e'])
  })

  it('snapshots a table that joins the publication, while streaming or while stopped, so bronze holds its older rows and TOAST-unchanged updates find them', async () => {
    await db.sourceSql('create table first_table (id int primary key, note text)')
    await db.sourceSql(`insert into first_table select g, 'x' from generate_series(1, 10) g`)
    await ensurePublication(db.source, 'growing_pub', [{ table: 'first_table' }])
    const toasted = `repeat(md5(g::text), 400)`
    await db.sourceSql(`create table joins_streaming (id int primary key, qty int, big text)`)
    await db.sourceSql(`insert into joins_streaming select g, 0, ${toasted} from generate_series(1, 1002) g`)
    await db.sourceSql(`create table joins_stopped (id int primary key, qty int, big text)`)
    await db.sourceSql(`insert into joins_stopped select g, 0, ${toasted} from generate_series(1, 500) g`)

    const controller = new AbortController()
    let landed = 0
    let snapshotted = () => {}
    const snapshot = new Promise<void>((resolve) => (snapshotted = resolve))
    const running = captureChanges(db.source, {
      slot: 'growing_slot',
      publication: 'growing_pub',
      to: db.warehouse,
      initialSnapshot: true,
      apply: true,
      maxBatchMs: 50,
      signal: controller.signal,
      onBatch: (batch) => void (landed += batch.changes),
      onSnapshot: () => snapshotted(),
    })
    const waitFor = async (changes: number) => {
      for (let waited = 0; landed < changes; waited += 50) {
        if (waited > 30_000) throw new Error(`only ${landed} of ${changes} changes landed`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    await snapshot
    await db.sourceSql(`update first_table set note = 'y' where id = 1`)
    await waitFor(1)
    await db.sourceSql(`alter publication growing_pub add table joins_streaming`)
    // Updates that leave the TOASTed column out: pgoutput sends it as unchanged.
    await db.sourceSql(`update joins_streaming set qty = qty + 1 where id % 10 = 0`)
    await db.sourceSql(`delete from joins_streaming where id = 7`)
    await waitFor(1 + 100 + 1)
    controller.abort()
    await running

    await db.sourceSql(`alter publication growing_pub add table joins_stopped`)
    await db.sourceSql(`update joins_stopped set qty = 5 where id <= 3`)
    await captureUntil({
      source: db.source,
      warehouse: db.warehouse,
      slot: 'growing_slot',
      publication: 'growing_pub',
      apply: true,
      changes: 3,
      firstMs: 10_000,
    })

    for (const table of ['first_table', 'joins_streaming', 'joins_stopped']) {
      const columns = table === 'first_table' ? ['id', 'note'] : ['id', 'qty', 'big']
      expect(await checksum(db.warehouseDatabase, `bronze.br_${table}`, columns), table).toEqual(await checksum(db.sourceDatabase, table, columns))
    }
    expect(
      await db.warehouseSql(`select table_name, reason, snapshot_rows::int as rows from bronze.cdc_tables where slot = 'growing_slot' order by 1`),
    ).toEqual([
      { table_name: 'first_table', reason: 'initial', rows: 10 },
      { table_name: 'joins_stopped', reason: 'added to publication', rows: 500 },
      { table_name: 'joins_streaming', reason: 'added to publication', rows: expect.any(Number) },
    ])
  })

  it("stops with PublicationChangedError for a table that joins the publication when told newTables: 'error'", async () => {
    await db.sourceSql('create table strict_a (id int primary key)')
    await db.sourceSql('create table strict_b (id int primary key)')
    await db.sourceSql(`insert into strict_b select generate_series(1, 5)`)
    await ensurePublication(db.source, 'strict_pub', [{ table: 'strict_a' }])
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 1_000)
    await captureChanges(db.source, { slot: 'strict_slot', publication: 'strict_pub', to: db.warehouse, initialSnapshot: true, signal: controller.signal })
    await db.sourceSql(`alter publication strict_pub add table strict_b`)
    const error = await refusal({ slot: 'strict_slot', publication: 'strict_pub', newTables: 'error' })
    expect(error).toBeInstanceOf(PublicationChangedError)
    expect((error as Error).message).toContain('public.strict_b')
  })

  it('copies a table again when what bronze holds of it changed without a change to carry it: made again, a column dropped and added again, a wider row filter or column list', async () => {
    await db.sourceSql(`create table remade (id int primary key, v text)`)
    await db.sourceSql(`insert into remade select g, 'old' from generate_series(1, 5) g`)
    await db.sourceSql(`create table readded (id int primary key, c int)`)
    await db.sourceSql(`insert into readded select g, g from generate_series(1, 5) g`)
    await db.sourceSql(`create table filtered (id int primary key, v text)`)
    await db.sourceSql(`insert into filtered select g, 'row ' || g from generate_series(1, 8) g`)
    await db.sourceSql(`create table listed (id int primary key, a int, b int)`)
    await db.sourceSql(`insert into listed select g, g, g * 10 from generate_series(1, 5) g`)
    await db.sourceSql(`create publication changing_pub for table remade, readded, filtered where (id > 5), listed (id, a)`)
    const run = (changes: number) =>
      captureUntil({
        source: db.source,
        warehouse: db.warehouse,
        slot: 'changing_slot',
        publication: 'changing_pub',
        apply: true,
        changes,
        firstMs: 10_000,
        idleMs: 2_000,
        initialSnapshot: true,
      })
    await run(0)
    await db.sourceSql(`drop table remade`)
    await db.sourceSql(`create table remade (id int primary key, v text)`)
    await db.sourceSql(`insert into remade values (100, 'new')`)
    await db.sourceSql(`alter publication changing_pub add table remade`)
    await db.sourceSql(`insert into remade values (101, 'after')`)
    await db.sourceSql(`alter table readded drop column c`)
    await db.sourceSql(`alter table readded add column c int default 9`)
    await db.sourceSql(`alter publication changing_pub set table remade, readded, filtered where (id > 2), listed (id, a, b)`)
    await db.sourceSql(`update readded set c = 1 where id = 1; update filtered set v = 'touched' where id = 7; update listed set a = -a where id = 1`)
    await run(4)
    for (const [table, columns] of [
      ['remade', ['id', 'v']],
      ['readded', ['id', 'c']],
      ['listed', ['id', 'a', 'b']],
    ] as const) {
      expect(await checksum(db.warehouseDatabase, `bronze.br_${table}`, [...columns]), table).toEqual(await checksum(db.sourceDatabase, table, [...columns]))
    }
    expect(await checksum(db.warehouseDatabase, 'bronze.br_filtered', ['id', 'v'])).toEqual(
      await checksum(db.sourceDatabase, '(select * from filtered where id > 2) f', ['id', 'v']),
    )
  })

  it('finds a table rewritten after a snapshot was taken, whose rows that snapshot cannot see', async () => {
    await db.sourceSql(`create table rewritten (id int primary key, v int)`)
    await db.sourceSql(`insert into rewritten select g, g from generate_series(1, 100) g`)
    await db.sourceSql(`create publication rewritten_pub for table rewritten`)
    const reader = await db.source.acquire()
    try {
      await reader.query('begin isolation level repeatable read read only')
      const tables = await publishedTables(reader, 'rewritten_pub')
      expect(await rewrittenSinceSnapshot(reader, tables)).toEqual([])
      await reader.query('commit')
      await reader.query('begin isolation level repeatable read read only')
      await reader.query('select 1')
      await db.sourceSql(`alter table rewritten alter column v type bigint`)
      const seen = await publishedTables(reader, 'rewritten_pub')
      expect(await rewrittenSinceSnapshot(reader, seen)).toEqual(['public.rewritten'])
      // What a copy under that snapshot would have read:
      expect((await reader.query('select count(*)::int as n from rewritten')).rows).toEqual([{ n: 0 }])
    } finally {
      await reader.query('rollback').catch(() => undefined)
      reader.release()
    }
  })
})
