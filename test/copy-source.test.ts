import { describe, expect, it } from 'vitest'
import { sql } from 'kysely'
import {
  AbortedError,
  bronzeMetadata,
  connect,
  ConnectionLostError,
  copySource,
  extract,
  memorySink,
  postgresSink,
  tableSource,
  type Transform,
} from '../src/index.js'
import { tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'
import { onFirstBatch } from './support/transforms.js'

const db = useDatabases('copy')

const identity: Transform = { name: 'identity', shape: (shape) => shape, apply: (batches) => batches }

async function seed(table: string, rows: number) {
  await db.sourceSql(`drop table if exists ${table}`)
  await db.sourceSql(`create table ${table} (
    id bigint primary key, n int, t text, nt text, amount numeric(12,2), code char(3), tags text[], doc jsonb,
    flag boolean, uid uuid, created timestamptz, updated timestamptz)`)
  await db.sourceSql(
    `insert into ${table}
     select g, g % 1000, 'text ' || g || E'\\twith\\ttabs\\nand \\\\ backslashes ünï',
            case when g % 3 = 0 then null when g % 3 = 1 then '' else 'x' end,
            (g * 1.01)::numeric(12,2), 'c' || (g % 10), array['a' || g, null, 'q"' || g], jsonb_build_object('k', g, 's', E'x\\ty'),
            g % 2 = 0, md5(g::text)::uuid, '2024-01-01 00:00:00.000001+00'::timestamptz + g * interval '1 second',
            case when g % 5 = 0 then null else '2024-06-01'::timestamptz + g * interval '1 millisecond' end
       from generate_series(1, $1) g`,
    [rows],
  )
}

async function bronzeDifference(left: string, right: string, columns: string): Promise<number> {
  const [row] = await db.warehouseSql(
    `select (select count(*) from (select ${columns} from ${left} except all select ${columns} from ${right}) a)
          + (select count(*) from (select ${columns} from ${right} except all select ${columns} from ${left}) b) as n`,
  )
  return Number(row?.n)
}

describe('copySource', () => {
  it('decodes COPY into exactly the rows the cursor source gives', async () => {
    await seed('events', 3000)
    const fromCopy = memorySink()
    const fromCursor = memorySink()
    await extract({ from: copySource(db.source, { table: 'events', batchSize: 700 }), to: fromCopy })
    await extract({ from: tableSource(db.source, { table: 'events' }), to: fromCursor })
    expect(fromCopy.rows).toHaveLength(3000)
    const byId = (rows: readonly Record<string, unknown>[]) => [...rows].sort((a, b) => Number(a.id) - Number(b.id))
    expect(byId(fromCopy.rows)).toEqual(byId(fromCursor.rows))
  })

  it('moves bytes undecoded into bronze, identical to the decoded path and to the source', async () => {
    await seed('orders', 20_000)
    const fast = await extract({
      from: copySource(db.source, { table: 'orders' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { table: 'fast_orders' }),
    })
    const decoded = await extract({
      from: copySource(db.source, { table: 'orders' }),
      through: [bronzeMetadata(), identity],
      to: postgresSink(db.warehouse, { table: 'decoded_orders' }),
    })
    const forced = await extract({
      from: copySource(db.source, { table: 'orders' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { table: 'forced_orders' }),
      fastPath: false,
    })
    expect([fast.path, decoded.path, forced.path]).toEqual(['copy-bytes', 'rows', 'rows'])
    expect([fast.rows, decoded.rows, forced.rows]).toEqual([20_000, 20_000, 20_000])
    // Without a progress listener the byte path counts rows once, in the sink; every step reports that count.
    expect(fast.steps.map((step) => [step.step, step.rows])).toEqual([
      ['source', 20_000],
      ['transform', 20_000],
      ['sink', 20_000],
    ])
    const columns = `id::text, n::text, t, nt, amount::text, code::text, tags::text, doc::text, flag::text, uid::text, created::text,
                     updated::text, _bronze_source, _bronze_schema, _bronze_table, _bronze_extraction_type`
    expect(await bronzeDifference('bronze.fast_orders', 'bronze.decoded_orders', columns)).toBe(0)
    expect(await bronzeDifference('bronze.fast_orders', 'bronze.forced_orders', columns)).toBe(0)
    const [stamps] = await db.warehouseSql(`select count(distinct _bronze_loaded_at)::int as n from bronze.fast_orders`)
    expect(stamps).toEqual({ n: 1 })
    // And both equal the source, compared through the same text casts.
    const { tablesEqual } = await import('./support/databases.js')
    const names = ['id', 'n', 't', 'nt', 'amount', 'code', 'tags', 'doc', 'flag', 'uid', 'created', 'updated']
    expect(await tablesEqual(db.sourceUrl, 'orders', db.warehouseUrl, 'bronze.fast_orders', names)).toEqual({
      missing: 0,
      extra: 0,
      sourceRows: 20_000,
      targetRows: 20_000,
    })
  })

  it('stores run constants once in replace mode, leaves no defaults behind, and appends them per row in append mode', async () => {
    const [defaults] = await db.warehouseSql(`select count(*)::int as n from pg_attrdef where adrelid = 'bronze.fast_orders'::regclass`)
    expect(defaults).toEqual({ n: 0 })
    const sink = postgresSink(db.warehouse, { table: 'appended_orders', mode: 'append' })
    const first = await extract({ from: copySource(db.source, { table: 'orders', where: sql`id <= ${10}` }), through: [bronzeMetadata()], to: sink })
    const second = await extract({ from: copySource(db.source, { table: 'orders', where: sql`id <= ${5}` }), through: [bronzeMetadata()], to: sink })
    expect([first.path, second.path]).toEqual(['copy-bytes', 'copy-bytes'])
    expect(
      await db.warehouseSql(
        `select count(*)::int as n, count(distinct _bronze_loaded_at)::int as runs, count(_bronze_source)::int as sourced
           from bronze.appended_orders`,
      ),
    ).toEqual([{ n: 15, runs: 2, sourced: 15 }])
  })

  it('copies a table with a stored generated column, on the byte and the decoded path', async () => {
    await db.sourceSql(`create table generated_cols (id int primary key, price numeric(10,2), doubled numeric generated always as (price * 2) stored)`)
    await db.sourceSql(`insert into generated_cols (id, price) select g, g * 1.5 from generate_series(1, 500) g`)
    for (const fastPath of [true, false]) {
      const report = await extract({
        from: copySource(db.source, { table: 'generated_cols' }),
        to: postgresSink(db.warehouse, { table: `generated_${fastPath ? 'bytes' : 'rows'}` }),
        fastPath,
      })
      expect(report.path).toBe(fastPath ? 'copy-bytes' : 'rows')
      const equal = await tablesEqual(db.sourceUrl, 'generated_cols', db.warehouseUrl, `bronze.generated_${fastPath ? 'bytes' : 'rows'}`, [
        'id',
        'price',
        'doubled',
      ])
      expect(equal).toMatchObject({ missing: 0, extra: 0, targetRows: 500 })
    }
  })

  it('copies a column subset, a filter and a Kysely query', async () => {
    const subset = memorySink()
    await extract({
      from: copySource(db.source, { table: 'orders', columns: ['id', 'nt'], where: sql`id <= ${3} and t like ${'text %'}` }),
      to: subset,
    })
    expect(subset.rows).toEqual([
      { id: 1n, nt: '' },
      { id: 2n, nt: 'x' },
      { id: 3n, nt: null },
    ])
    const kysely = db.source.kysely<{ orders: { id: bigint; amount: string } }>()
    const report = await extract({
      from: copySource(db.source, { query: kysely.selectFrom('orders').select(['id', 'amount']).where('id', '>', 19_990n), name: 'recent' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse),
    })
    expect(report).toMatchObject({ path: 'copy-bytes', rows: 10, target: 'bronze.br_recent' })
  })

  it('binds filter values as literals that cannot escape, even through COPY', async () => {
    for (const status of ["x' or '1'='1", "x'); drop table orders; --", 'x\\', "x\\'; select 1; --"]) {
      const sink = memorySink()
      await extract({ from: copySource(db.source, { table: 'orders', where: { nt: status } }), to: sink })
      expect(sink.rows).toEqual([])
    }
    expect(await db.sourceSql('select count(*)::int as n from orders')).toEqual([{ n: 20_000 }])
  })

  it('aborted mid-stream: no rows land, and every connection is released', async () => {
    const controller = new AbortController()
    let seen = 0
    const failure = await extract({
      from: copySource(db.source, { table: 'orders' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { table: 'aborted_orders' }),
      signal: controller.signal,
      onProgress: (event) => {
        seen = event.rows
        if (event.rows > 0) controller.abort()
      },
    }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(AbortedError)
    expect(seen).toBeGreaterThan(0)
    expect(await db.warehouseSql(`select to_regclass('bronze.aborted_orders') is null as absent`)).toEqual([{ absent: true }])
    expect(await db.warehouseSql(`select count(*)::int as n from pg_class where relname like 'pgdk_stage_%'`)).toEqual([{ n: 0 }])
    expect(db.source.stats().total - db.source.stats().idle).toBe(0)
    expect(db.warehouse.stats().total - db.warehouse.stats().idle).toBe(0)
  })

  it('breaking out of a COPY early destroys that client and never leaks one (pool size + 1 times)', async () => {
    const conn = connect({ url: db.sourceUrl, pool: { max: 2, acquireTimeoutMs: 2000 } })
    try {
      for (let round = 0; round < 3; round++) {
        for await (const batch of copySource(conn, { table: 'orders', batchSize: 100 })) {
          expect(batch.rows).toHaveLength(100)
          break
        }
      }
      expect(conn.stats().total - conn.stats().idle).toBe(0)
      const { rows } = await conn.query('select 1 as ok')
      expect(rows).toEqual([{ ok: 1 }])
    } finally {
      await conn.close()
    }
  })

  it('a source backend terminated mid-COPY gives ConnectionLostError and leaves bronze unchanged', async () => {
    await seed('big', 200_000)
    await extract({ from: copySource(db.source, { table: 'big' }), to: postgresSink(db.warehouse, { table: 'big_copy' }) })
    const conn = connect({ url: db.sourceUrl, applicationName: 'copy-victim' })
    let killed = false
    // The source backend is terminated when the first batch has been decoded, with most of the COPY still to come.
    const killer = onFirstBatch(async () => {
      killed = true
      await db.sourceSql(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'copy-victim'`)
    })
    const failure = await extract({
      from: copySource(conn, { table: 'big' }),
      through: [bronzeMetadata(), killer],
      to: postgresSink(db.warehouse, { table: 'big_copy' }),
      retry: false,
    }).catch((error: unknown) => error)
    await conn.close()
    expect(killed).toBe(true)
    expect(failure).toBeInstanceOf(ConnectionLostError)
    expect((failure as ConnectionLostError).step).toBe('source')
    expect(await db.warehouseSql('select count(*)::int as n from bronze.big_copy')).toEqual([{ n: 200_000 }])
    expect(
      await db.warehouseSql(`select count(*)::int as n from information_schema.columns where table_name = 'big_copy' and column_name like '_bronze%'`),
    ).toEqual([{ n: 0 }])
  })
})
