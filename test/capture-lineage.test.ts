import { describe, expect, it } from 'vitest'
import { bronzeMetadata, captureChanges, ConfigError, extract, postgresSink, tableSource } from '../src/index.js'
import { ensurePublication, ensureSlot, type InitialSnapshotReport } from '../src/cdc.js'
import { redact } from '../src/connection/redact.js'
import { captureUntil } from './support/capture.js'
import { checksum } from './support/checksum.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('lineage')

const LINEAGE = ['_bronze_loaded_at', '_bronze_source', '_bronze_schema', '_bronze_table', '_bronze_extraction_type', '_bronze_lsn']

/** The columns of a warehouse table, in order. */
async function columnsOf(table: string): Promise<string[]> {
  const rows = await db.warehouseSql(`select attname from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attnum`, [
    table,
  ])
  return rows.map((row) => row.attname as string)
}

function capture(slot: string, publication: string, changes: number) {
  return captureUntil({ source: db.source, warehouse: db.warehouse, slot, publication, apply: true, changes, idleMs: 2_000 })
}

describe('lineage columns of bronze tables a capture writes', () => {
  it('every applied row carries them; an updated row has its latest commit’s LSN and loading time', async () => {
    await db.sourceSql(`create table items (id int primary key, name text, qty int)`)
    // Keyless with REPLICA IDENTITY FULL: rows are matched by their old values, never by the lineage columns.
    await db.sourceSql(`create table bag (label text, n int)`)
    await db.sourceSql(`alter table bag replica identity full`)
    await ensurePublication(db.source, 'pub_items', [{ table: 'items' }, { table: 'bag' }])
    await ensureSlot(db.source, 'lineage_items_slot')
    await db.sourceSql(`insert into items select g, 'i' || g, 0 from generate_series(1, 50) g`)
    await db.sourceSql(`insert into bag values ('a', 1), ('a', 1), ('b', 2), ('c', null)`)
    const first = await capture('lineage_items_slot', 'pub_items', 54)
    expect(first.changes).toBe(54)

    // Later transactions, landing in another batch: an upsert, a key move, deletes, and FULL updates of duplicates.
    await db.sourceSql(`update items set qty = qty + 1 where id <= 10`)
    await db.sourceSql(`update items set id = id + 1000, name = 'moved' where id in (3, 4)`)
    await db.sourceSql(`delete from items where id between 46 and 50`)
    await db.sourceSql(`update bag set n = 10 where label = 'a' and ctid = (select min(ctid) from bag where label = 'a')`)
    await db.sourceSql(`update bag set label = 'c2' where label = 'c'`)
    await db.sourceSql(`delete from bag where label = 'b'`)
    const second = await capture('lineage_items_slot', 'pub_items', 10 + 2 + 5 + 1 + 1 + 1)
    expect(second.changes).toBe(20)

    expect(await columnsOf('bronze.br_items')).toEqual(['id', 'name', 'qty', ...LINEAGE])
    expect(await columnsOf('bronze.br_bag')).toEqual(['label', 'n', ...LINEAGE])
    expect(await checksum(db.warehouseDatabase, 'bronze.br_items', ['id', 'name', 'qty'])).toEqual(
      await checksum(db.sourceDatabase, 'items', ['id', 'name', 'qty']),
    )
    expect(await checksum(db.warehouseDatabase, 'bronze.br_bag', ['label', 'n'])).toEqual(await checksum(db.sourceDatabase, 'bag', ['label', 'n']))

    // Each row: the constants, and the commit LSN and loading time of the last change that wrote it (from the change
    // log, which the same warehouse transaction wrote).
    const source = redact(db.source.label)
    for (const table of ['items', 'bag']) {
      const rows = await db.warehouseSql(
        `select b._bronze_source, b._bronze_schema, b._bronze_table, b._bronze_extraction_type,
                b._bronze_lsn = last.commit_lsn as latest_lsn, b._bronze_loaded_at = last._bronze_loaded_at as loaded_then
           from bronze.br_${table} b
           cross join lateral (
             select c.commit_lsn, c._bronze_loaded_at from bronze.cdc_changes c
              where c.table_name = '${table}' and c.operation <> 'delete'
                and ${table === 'items' ? `(c.data->>'id')::int = b.id` : `c.data->>'label' = b.label and (c.data->>'n')::int is not distinct from b.n`}
              order by c.commit_lsn desc, c.seq desc limit 1) last`,
      )
      expect(rows.length).toBe(table === 'items' ? 45 : 3)
      for (const row of rows) {
        expect(row).toEqual({
          _bronze_source: source,
          _bronze_schema: 'public',
          _bronze_table: table,
          _bronze_extraction_type: 'cdc',
          latest_lsn: true,
          loaded_then: true,
        })
      }
    }
    // The label carries no password, and rows of the second batch were loaded after those of the first.
    expect(source).not.toMatch(/:[^@/]*@/)
    const [times] = await db.warehouseSql(
      `select count(distinct _bronze_lsn)::int as lsns,
              (select _bronze_loaded_at from bronze.br_items where id = 1) > (select _bronze_loaded_at from bronze.br_items where id = 20) as later
         from bronze.br_items`,
    )
    // The insert's, the update's and the key move's transactions.
    expect(times).toEqual({ lsns: 3, later: true })
  })

  it('rows a snapshot copies carry them with extraction type cdc_snapshot and the snapshot’s consistent point', async () => {
    await db.sourceSql(`create table stock (id int primary key, qty int not null)`)
    await db.sourceSql(`insert into stock select g, 0 from generate_series(1, 500) g`)
    await ensurePublication(db.source, 'pub_stock', [{ table: 'stock' }])
    const controller = new AbortController()
    let snapshot: InitialSnapshotReport | undefined
    await captureChanges(db.source, {
      slot: 'lineage_stock_slot',
      publication: 'pub_stock',
      to: db.warehouse,
      apply: true,
      initialSnapshot: true,
      signal: controller.signal,
      onSnapshot: (report) => {
        snapshot = report
        controller.abort()
      },
    })
    const consistentPoint = (snapshot as InitialSnapshotReport).consistentPoint
    const [copied] = await db.warehouseSql(
      `select count(*)::int as rows, count(*) filter (where _bronze_extraction_type = 'cdc_snapshot' and _bronze_lsn = $1::pg_lsn
                and _bronze_source = $2 and _bronze_schema = 'public' and _bronze_table = 'stock'
                and _bronze_loaded_at = (select updated_at from bronze.cdc_state where slot = 'lineage_stock_slot'))::int as with_lineage
         from bronze.br_stock`,
      [consistentPoint, redact(db.source.label)],
    )
    expect(copied).toEqual({ rows: 500, with_lineage: 500 })

    await db.sourceSql(`update stock set qty = 1 where id <= 5`)
    await capture('lineage_stock_slot', 'pub_stock', 5)
    const [after] = await db.warehouseSql(
      `select count(*) filter (where _bronze_extraction_type = 'cdc' and _bronze_lsn > $1::pg_lsn)::int as changed,
              count(*) filter (where _bronze_extraction_type = 'cdc_snapshot' and _bronze_lsn = $1::pg_lsn)::int as copied
         from bronze.br_stock`,
      [consistentPoint],
    )
    expect(after).toEqual({ changed: 5, copied: 495 })
  })

  it('keeps a table first loaded by a batch extraction (bronzeMetadata, merge) up to date, with the same columns', async () => {
    await db.sourceSql(`create table orders (id int primary key, status text, amount numeric(10,2))`)
    await db.sourceSql(`insert into orders select g, 'new', g from generate_series(1, 200) g`)
    await ensurePublication(db.source, 'pub_orders', [{ table: 'orders' }])
    // The slot first, then the batch load: changes committed in between are in both, and applying them again is
    // harmless (upserts and deletes by the key).
    await ensureSlot(db.source, 'lineage_orders_slot')
    await db.sourceSql(`update orders set status = 'paid' where id <= 20`)
    const loaded = await extract({
      from: tableSource(db.source, { table: 'orders' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { mode: 'merge' }),
    })
    expect(loaded.rows).toBe(200)
    const batchColumns = await columnsOf('bronze.br_orders')

    await db.sourceSql(`update orders set status = 'shipped' where id between 10 and 30`)
    await db.sourceSql(`insert into orders values (0, 'new', 5)`)
    await db.sourceSql(`delete from orders where id > 190`)
    await db.sourceSql(`update orders set id = 1000 where id = 100`)
    const report = await capture('lineage_orders_slot', 'pub_orders', 20 + 21 + 1 + 10 + 1)
    expect(report.changes).toBe(53)

    // The batch's columns, then the one a capture adds: the rows' lineage is one set of columns.
    expect(await columnsOf('bronze.br_orders')).toEqual([...batchColumns, '_bronze_lsn'])
    expect(batchColumns).toEqual(['id', 'status', 'amount', ...LINEAGE.slice(0, -1)])
    const columns = ['id', 'status', 'amount']
    expect(await checksum(db.warehouseDatabase, 'bronze.br_orders', columns)).toEqual(await checksum(db.sourceDatabase, 'orders', columns))
    const kinds = await db.warehouseSql(
      `select _bronze_extraction_type as kind, count(*)::int as rows, count(_bronze_lsn)::int as with_lsn, count(distinct _bronze_source)::int as sources
         from bronze.br_orders group by 1 order by 1`,
    )
    // Rows no change touched keep the batch's lineage (no LSN); the others say the capture wrote them last.
    expect(kinds).toEqual([
      { kind: 'cdc', rows: 20 + 10 + 1 + 1, with_lsn: 32, sources: 1 },
      { kind: 'full', rows: 200 - 30 - 10 - 1, with_lsn: 0, sources: 1 },
    ])
  })

  it('refuses a source column named like a lineage column with a ConfigError', async () => {
    await db.sourceSql(`create table clash (id int primary key, _bronze_lsn text)`)
    await ensurePublication(db.source, 'pub_clash', [{ table: 'clash' }])
    await ensureSlot(db.source, 'slot_clash')
    await db.sourceSql(`insert into clash values (1, 'x')`)
    const failure = await capture('slot_clash', 'pub_clash', 1).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(ConfigError)
    expect(String((failure as Error).message)).toMatch(/_bronze_lsn.*lineage/)
  })
})
