import { describe, expect, it } from 'vitest'
import { sql } from 'kysely'
import {
  AbortedError,
  bronzeMetadata,
  connect,
  ConfigError,
  copySource,
  extract,
  memorySink,
  postgresSink,
  PoolTimeoutError,
  SinkWriteError,
  tableSource,
  TransformError,
  UnknownColumnError,
  UnknownTableError,
  type Batch,
  type Row,
  type Transform,
} from '../src/index.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('pipe')

async function seedOrders(table = 'orders', rows = 5000) {
  await db.sourceSql(`drop table if exists ${table}`)
  await db.sourceSql(`create table ${table} (id int primary key, status text, total numeric(12,2))`)
  await db.sourceSql(`insert into ${table} select g, case when g % 3 = 0 then 'paid' else 'open' end, g * 1.25 from generate_series(1, $1) g`, [rows])
}

/** A transform that throws once it has passed `after` batches. */
function failAfter(after: number): Transform {
  return {
    name: 'failAfter',
    shape: (input) => input,
    async *apply(batches: AsyncIterable<Batch<Row>>) {
      let seen = 0
      for await (const batch of batches) {
        if (seen++ === after) throw new Error('boom in transform')
        yield batch
      }
    },
  }
}

describe('extract()', () => {
  it('refuses a pipeline without a source or a sink, or with transforms not in an array, with a ConfigError naming the field', async () => {
    const from = tableSource(db.source, { table: 'orders' })
    const to = memorySink()
    const attempt = (options: unknown) => extract(options as Parameters<typeof extract>[0]).catch((error: unknown) => error)
    for (const [options, path] of [
      [{ to }, 'from'],
      [{ from }, 'to'],
      [{ from: {}, to }, 'from'],
      [{ from, to, through: bronzeMetadata() }, 'through'],
      [{ from, to, through: [bronzeMetadata(), null] }, 'through.1'],
      [undefined, 'options'],
    ] as const) {
      const error = await attempt(options)
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).path).toBe(path)
    }
  })

  it('reports rows, bytes, duration and per-step timings', async () => {
    await seedOrders()
    const progress: number[] = []
    const report = await extract({
      from: tableSource(db.source, { table: 'orders', batchSize: 1000 }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse),
      onProgress: (event) => progress.push(event.final ? -event.rows : event.rows),
    })
    expect(report).toMatchObject({ rows: 5000, target: 'bronze.br_orders', source: 'table public.orders' })
    expect(report.bytes).toBeGreaterThan(5000 * 20)
    expect(report.steps.map((step) => [step.step, step.rows])).toEqual([
      ['source', 5000],
      ['transform', 5000],
      ['sink', 5000],
    ])
    // One event per batch, then the final one (negated here) after the commit.
    expect(progress).toEqual([1000, 2000, 3000, 4000, 5000, -5000])
    const [metadata] = await db.warehouseSql(
      `select count(distinct _bronze_loaded_at)::int as stamps, min(_bronze_source) as source, min(_bronze_schema) as schema,
              min(_bronze_table) as "table", min(_bronze_extraction_type) as type from bronze.br_orders`,
    )
    expect(metadata).toEqual({ stamps: 1, source: db.source.label, schema: 'public', table: 'orders', type: 'full' })
  })

  it('replace is atomic: a run that fails mid-way leaves the previous table, and readers never see a partial one', async () => {
    await seedOrders()
    await extract({ from: tableSource(db.source, { table: 'orders' }), to: postgresSink(db.warehouse) })
    await db.sourceSql(`insert into orders select g, 'new', 1 from generate_series(5001, 9000) g`)

    const seenDuringLoad: unknown[] = []
    const peek: Transform = {
      name: 'peek',
      shape: (input) => input,
      async *apply(batches) {
        for await (const batch of batches) {
          seenDuringLoad.push((await db.warehouseSql('select count(*)::int as n from bronze.br_orders'))[0]?.n)
          yield batch
        }
      },
    }
    const failure = await extract({
      from: tableSource(db.source, { table: 'orders', batchSize: 1000 }),
      through: [peek, failAfter(5)],
      to: postgresSink(db.warehouse, { mode: 'replace' }),
    }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(TransformError)
    expect((failure as TransformError).step).toBe('transform')
    expect(seenDuringLoad.length).toBeGreaterThan(3)
    expect(new Set(seenDuringLoad)).toEqual(new Set([5000]))
    expect(await db.warehouseSql('select count(*)::int as n from bronze.br_orders')).toEqual([{ n: 5000 }])
    // No staging table is left behind.
    expect(await db.warehouseSql(`select relname from pg_class where relname like 'pgdk_stage_%'`)).toEqual([])

    await extract({ from: tableSource(db.source, { table: 'orders' }), to: postgresSink(db.warehouse, { mode: 'replace' }) })
    expect(await db.warehouseSql('select count(*)::int as n from bronze.br_orders')).toEqual([{ n: 9000 }])
  })

  it('replace refuses, naming them, when views depend on the bronze table, and leaves the table as it was', async () => {
    await seedOrders('viewed', 100)
    await extract({ from: tableSource(db.source, { table: 'viewed' }), to: postgresSink(db.warehouse) })
    await db.warehouseSql(`create view bronze.paid_viewed as select * from bronze.br_viewed where status = 'paid'`)
    await db.sourceSql(`insert into viewed values (101, 'paid', 1)`)
    const failure = await extract({ from: tableSource(db.source, { table: 'viewed' }), to: postgresSink(db.warehouse) }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(SinkWriteError)
    expect((failure as Error).message).toMatch(/view bronze\.paid_viewed depends on table bronze\.br_viewed.*use mode 'append' or 'merge'/)
    expect(await db.warehouseSql('select count(*)::int as n from bronze.br_viewed')).toEqual([{ n: 100 }])
    expect(await db.warehouseSql(`select relname from pg_class where relname like 'pgdk_stage_%'`)).toEqual([])
    // append keeps the table, so the view lives on: 33 paid rows before, 34 more appended.
    await extract({ from: tableSource(db.source, { table: 'viewed' }), to: postgresSink(db.warehouse, { mode: 'append' }) })
    expect(await db.warehouseSql('select count(*)::int as n from bronze.paid_viewed')).toEqual([{ n: 67 }])
  })

  it("merge upserts by the source table's primary key, which table and COPY sources report; a subset without it is refused", async () => {
    await db.sourceSql(`drop table if exists keyed`)
    await db.sourceSql(`create table keyed (region text, id int, status text, primary key (id, region))`)
    await db.sourceSql(`insert into keyed select 'eu', g, 'open' from generate_series(1, 50) g`)
    for (const from of [tableSource(db.source, { table: 'keyed' }), copySource(db.source, { table: 'keyed' })]) {
      expect((await from.shape()).primaryKey).toEqual(['id', 'region'])
    }
    await extract({ from: tableSource(db.source, { table: 'keyed' }), to: postgresSink(db.warehouse, { mode: 'merge' }) })
    await db.sourceSql(`update keyed set status = 'paid' where id <= 10`)
    await db.sourceSql(`insert into keyed values ('us', 1, 'new')`)
    await extract({ from: copySource(db.source, { table: 'keyed' }), to: postgresSink(db.warehouse, { mode: 'merge' }) })
    expect(await db.warehouseSql(`select status, count(*)::int as n from bronze.br_keyed group by status order by status`)).toEqual([
      { status: 'new', n: 1 },
      { status: 'open', n: 40 },
      { status: 'paid', n: 10 },
    ])
    const subset = await extract({
      from: tableSource(db.source, { table: 'keyed', columns: ['id', 'status'] }),
      to: postgresSink(db.warehouse, { mode: 'merge', table: 'keyed_subset' }),
    }).catch((error: unknown) => error)
    expect(subset).toBeInstanceOf(ConfigError)
    expect((subset as Error).message).toMatch(/merge needs a primary key/)
  })

  it('append adds rows in one transaction and adds new source columns to the table', async () => {
    await seedOrders('events', 100)
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    await extract({ from: tableSource(db.source, { table: 'events', columns: ['id', 'status'] }), to: sink })
    await extract({ from: tableSource(db.source, { table: 'events' }), to: sink })
    expect(await db.warehouseSql('select count(*)::int as n, count(total)::int as with_total from bronze.br_events')).toEqual([{ n: 200, with_total: 100 }])

    const failure = await extract({
      from: tableSource(db.source, { table: 'events', batchSize: 10 }),
      through: [failAfter(3)],
      to: sink,
    }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(TransformError)
    expect(await db.warehouseSql('select count(*)::int as n from bronze.br_events')).toEqual([{ n: 200 }])
  })

  it('stops on abort, writes nothing and releases every connection', async () => {
    await seedOrders('aborted', 20_000)
    const controller = new AbortController()
    const failure = await extract({
      from: tableSource(db.source, { table: 'aborted', batchSize: 500 }),
      to: postgresSink(db.warehouse, { table: 'br_aborted' }),
      signal: controller.signal,
      onProgress: (event) => {
        if (event.rows >= 2000) controller.abort()
      },
    }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(AbortedError)
    expect(await db.warehouseSql(`select to_regclass('bronze.br_aborted') is null as absent`)).toEqual([{ absent: true }])
    expect(db.source.stats().total - db.source.stats().idle).toBe(0)
    expect(db.warehouse.stats().total - db.warehouse.stats().idle).toBe(0)
  })

  it('writes into memory with memorySink', async () => {
    await seedOrders('small', 10)
    const sink = memorySink()
    await extract({ from: tableSource(db.source, { table: 'small', where: sql`id <= ${3}` }), to: sink })
    expect(sink.rows).toEqual([
      { id: 1, status: 'open', total: '1.25' },
      { id: 2, status: 'open', total: '2.50' },
      { id: 3, status: 'paid', total: '3.75' },
    ])
  })
})

describe('connections', () => {
  it('releases the connection when a loop breaks early (pool size + 1 times)', async () => {
    await seedOrders('loop', 1000)
    const conn = connect({ url: db.sourceUrl, pool: { max: 2, acquireTimeoutMs: 2000 } })
    try {
      for (let round = 0; round < 3; round++) {
        for await (const batch of tableSource(conn, { table: 'loop', batchSize: 10 })) {
          expect(batch.rows).toHaveLength(10)
          break
        }
      }
      expect(conn.stats().waiting).toBe(0)
      expect(conn.stats().total - conn.stats().idle).toBe(0)
    } finally {
      await conn.close()
    }
  })

  it('waits for a free connection, then fails with PoolTimeoutError after the acquire timeout', async () => {
    const conn = connect({ url: db.sourceUrl, pool: { max: 1, acquireTimeoutMs: 300 } })
    try {
      const held = await conn.acquire()
      const started = Date.now()
      await expect(conn.acquire()).rejects.toBeInstanceOf(PoolTimeoutError)
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
      held.release()
      const again = await conn.acquire()
      again.release()
    } finally {
      await conn.close()
    }
  })

  it('applies application_name, timeouts and session settings to every session', async () => {
    const conn = connect({
      url: db.sourceUrl,
      applicationName: 'nightly-orders',
      timeouts: { statementMs: 4321, lockMs: 1234 },
      settings: { work_mem: '77MB' },
    })
    try {
      const { rows } = await conn.query(
        `select current_setting('application_name') as app, current_setting('statement_timeout') as st,
                current_setting('lock_timeout') as lt, current_setting('work_mem') as wm, current_setting('TimeZone') as tz`,
      )
      expect(rows[0]).toEqual({ app: 'nightly-orders', st: '4321ms', lt: '1234ms', wm: '77MB', tz: 'UTC' })
    } finally {
      await conn.close()
    }
  })

  it('keeps the password out of errors and metadata when the server is unreachable', async () => {
    const secret = 'Unreachable-Secret-91'
    const conn = connect({ url: `postgresql://etl:${secret}@127.0.0.1:1/x`, timeouts: { connectMs: 2000 }, ssl: { mode: 'disable' } })
    const failure = await conn.acquire().catch((error: unknown) => error)
    expect((failure as Error).constructor.name).toBe('ConnectionError')
    expect(JSON.stringify({ ...(failure as object), message: (failure as Error).message, stack: (failure as Error).stack })).not.toContain(secret)
    await conn.close()
  })
})

describe('identifiers and filters', () => {
  it('handles quotes, semicolons, dots and mixed case in schema, table and column names', async () => {
    await db.sourceSql(`create schema "Odd ""Sch;ema"`)
    await db.sourceSql(`create table "Odd ""Sch;ema"."Mixed.Case""T;bl" ("Id" int, "we""ird;col" text, "a.b" int)`)
    await db.sourceSql(`insert into "Odd ""Sch;ema"."Mixed.Case""T;bl" values (1, 'x', 2), (2, 'y', 3)`)
    const report = await extract({
      from: tableSource(db.source, { schema: 'Odd "Sch;ema', table: 'Mixed.Case"T;bl', columns: ['Id', 'we"ird;col', 'a.b'], where: { 'we"ird;col': 'y' } }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { schema: 'Bronze "X"' }),
    })
    expect(report.target).toBe('Bronze "X".br_Mixed.Case"T;bl')
    expect(await db.warehouseSql(`select "Id", "we""ird;col", "a.b", _bronze_table from "Bronze ""X"""."br_Mixed.Case""T;bl"`)).toEqual([
      { Id: 2, 'we"ird;col': 'y', 'a.b': 3, _bronze_table: 'Mixed.Case"T;bl' },
    ])
  })

  it('treats injection attempts in identifiers as names that do not exist', async () => {
    await seedOrders('victim', 10)
    const attempts = ['victim; drop table victim; --', 'victim" ; drop table victim; --', "victim'; drop table victim; --"]
    for (const table of attempts) {
      await expect(extract({ from: tableSource(db.source, { table }), to: memorySink() })).rejects.toBeInstanceOf(UnknownTableError)
    }
    await expect(extract({ from: tableSource(db.source, { table: 'victim', columns: ['id", (select 1) as "x'] }), to: memorySink() })).rejects.toBeInstanceOf(
      UnknownColumnError,
    )
    expect(await db.sourceSql('select count(*)::int as n from victim')).toEqual([{ n: 10 }])
  })

  it('binds filter values as parameters, never as SQL', async () => {
    await seedOrders('victim2', 10)
    for (const where of [{ status: "open' or '1'='1" }, { status: "x'); drop table victim2; --" }]) {
      const sink = memorySink()
      await extract({ from: tableSource(db.source, { table: 'victim2', where }), to: sink })
      expect(sink.rows).toEqual([])
    }
    const sink = memorySink()
    await extract({ from: tableSource(db.source, { table: 'victim2', where: { status: 'paid', id: [3, 6, 7] } }), to: sink })
    expect(sink.rows.map((row) => row.id)).toEqual([3, 6])
    const callback = memorySink()
    await extract({ from: tableSource(db.source, { table: 'victim2', where: (eb) => eb('total', '>', '11') }), to: callback })
    expect(callback.rows.map((row) => row.id)).toEqual([9, 10])
    expect(await db.sourceSql('select count(*)::int as n from victim2')).toEqual([{ n: 10 }])
  })

  it('refuses names the server would truncate and sinks without a target name', async () => {
    expect(() => tableSource(db.source, { table: 'x'.repeat(64) })).toThrow(ConfigError)
    await seedOrders('t'.repeat(62), 1)
    await expect(extract({ from: tableSource(db.source, { table: 't'.repeat(62) }), to: postgresSink(db.warehouse) })).rejects.toThrow(/longer than 63 bytes/)
  })
})
