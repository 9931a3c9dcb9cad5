import { createRequire } from 'node:module'
import { sep } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { Kysely, PostgresDialect, sql } from 'kysely'
import { ConfigError, connect, copySource, PoolTimeoutError, extract, memorySink, postgresSink, querySource, tableSource } from '../src/index.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('borrowed')

// The caller's pool prints values its own way (another time zone, SQL dates day first, a statement timeout):
// pg-datakit's reads must not see that, and the caller's clients must keep it.
const CALLER_OPTIONS = '-c TimeZone=America/New_York -c DateStyle=SQL,DMY -c statement_timeout=123456'
const pools: pg.Pool[] = []
function callerPool(max = 2): pg.Pool {
  const pool = new pg.Pool({ connectionString: db.sourceUrl, options: CALLER_OPTIONS, max })
  pool.on('error', () => undefined) // as pg asks of every pool: an idle client's error (the database dropped at the end)
  pools.push(pool)
  return pool
}
afterAll(async () => {
  for (const pool of pools) if (!pool.ended) await pool.end()
})

async function makeOrders(table: string): Promise<void> {
  await db.sourceSql(`create table ${table} (id bigint primary key, amount numeric(20,6), placed_at timestamptz, on_day date)`)
  await db.sourceSql(
    `insert into ${table} select g, g * 1.000001, '2026-01-31 23:30:00.123456+00'::timestamptz + g * interval '1 hour', date '2026-02-03' + g
       from generate_series(1, 2500) g`,
  )
}

/** Rows of the source table missing from the bronze table and the other way round (both must be 0). */
async function difference(table: string): Promise<number> {
  const source = await db.sourceSql(`select id::text, amount::text, placed_at::text, on_day::text from ${table} order by id`)
  const bronze = await db.warehouseSql(`select id::text, amount::text, placed_at::text, on_day::text from bronze.br_${table} order by id`)
  const key = (rows: Record<string, unknown>[]) => new Set(rows.map((row) => JSON.stringify(row)))
  const a = key(source)
  const b = key(bronze)
  return [...a].filter((row) => !b.has(row)).length + [...b].filter((row) => !a.has(row)).length
}

/** What each of the pool's clients says for the caller's settings, every client checked out at once. */
async function callerSettings(pool: pg.Pool, clients: number): Promise<string[]> {
  const held = await Promise.all(Array.from({ length: clients }, () => pool.connect()))
  try {
    return await Promise.all(
      held.map(async (client) => {
        const { rows } = await client.query<{ tz: string; ds: string; st: string }>(
          `select current_setting('TimeZone') as tz, current_setting('DateStyle') as ds, current_setting('statement_timeout') as st`,
        )
        return `${rows[0]?.tz} ${rows[0]?.ds} ${rows[0]?.st}`
      }),
    )
  } finally {
    for (const client of held) client.release()
  }
}

describe('connect() borrowing a pg.Pool', () => {
  it("extracts through the caller's pool with pg-datakit's settings and gives every client back as it was", async () => {
    await makeOrders('pool_orders')
    const pool = callerPool()
    const source = connect(pool, { timeouts: { statementMs: 60_000 }, settings: { work_mem: '8MB' } })
    expect(source.settings.borrowed).toBe('pg.Pool')

    // Read through pg-datakit: the lossless type map and UTC, whatever the pool's clients print.
    const sink = memorySink()
    await extract({ from: tableSource(source, { table: 'pool_orders' }), to: sink })
    expect(sink.rows.length).toBe(2500)
    expect(sink.rows[0]).toEqual({ id: 1n, amount: '1.000001', placed_at: '2026-02-01 00:30:00.123456+00', on_day: '2026-02-04' })
    const { rows } = await source.query<{ tz: string; st: string; wm: string }>(
      `select current_setting('TimeZone') as tz, current_setting('statement_timeout') as st, current_setting('work_mem') as wm`,
    )
    expect(rows[0]).toEqual({ tz: 'UTC', st: '1min', wm: '8MB' })
    expect(source.label).toMatch(new RegExp(`/${db.sourceDatabase}$`))

    // Both paths into the warehouse: rows decoded (cursor) and COPY bytes.
    await extract({ from: tableSource(source, { table: 'pool_orders' }), to: postgresSink(db.warehouse, { mode: 'replace' }) })
    expect(await difference('pool_orders')).toBe(0)
    await db.warehouseSql('drop table bronze.br_pool_orders')
    await extract({ from: copySource(source, { table: 'pool_orders' }), to: postgresSink(db.warehouse, { mode: 'replace' }) })
    expect(await difference('pool_orders')).toBe(0)

    await source.close()
    expect(pool.ended).toBe(false)
    expect(await callerSettings(pool, 2)).toEqual(['America/New_York SQL, DMY 123456ms', 'America/New_York SQL, DMY 123456ms'])
    const after = await pool.query<{ id: unknown }>('select id from pool_orders where id = 1')
    expect(after.rows[0]?.id).toBe('1') // the caller's own type parsing (pg's default: int8 as a string), untouched
  })

  it('writes into a borrowed warehouse pool: COPY FROM and the swap in one transaction, twice', async () => {
    const warehousePool = new pg.Pool({ connectionString: db.warehouseUrl, options: CALLER_OPTIONS, max: 2 })
    warehousePool.on('error', () => undefined)
    pools.push(warehousePool)
    const warehouse = connect(warehousePool)
    await extract({ from: copySource(db.source, { table: 'pool_orders' }), to: postgresSink(warehouse, { mode: 'replace' }) })
    expect(await difference('pool_orders')).toBe(0)
    await db.sourceSql(`update pool_orders set amount = amount + 1 where id <= 10`)
    await extract({ from: tableSource(db.source, { table: 'pool_orders' }), to: postgresSink(warehouse, { mode: 'replace' }) })
    expect(await difference('pool_orders')).toBe(0)
    await warehouse.close()
    expect(await callerSettings(warehousePool, 2)).toEqual(['America/New_York SQL, DMY 123456ms', 'America/New_York SQL, DMY 123456ms'])
  })

  it("says, when the caller's pool is full, that its own size is what to raise", async () => {
    const pool = callerPool(1)
    const held = await pool.connect()
    const source = connect(pool, { acquireTimeoutMs: 200 })
    try {
      const error = await source.acquire().catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(PoolTimeoutError)
      expect((error as Error).message).toMatch(/the borrowed pg\.Pool's own pool is full/)
      expect((error as Error).message).not.toMatch(/pool max 10/)
    } finally {
      held.release()
      await source.close()
    }
  })

  it('refuses change data capture: a borrowed pool cannot open a replication connection', async () => {
    const source = connect(callerPool(1))
    await expect(source.replicationClient()).rejects.toThrow(ConfigError)
    await source.close()
  })
})

describe('connect() borrowing a Kysely instance', () => {
  it("extracts through the Kysely instance's pool, which keeps working after close()", async () => {
    await makeOrders('kysely_orders')
    const pool = callerPool()
    const kysely = new Kysely<{ kysely_orders: { id: bigint; amount: string } }>({ dialect: new PostgresDialect({ pool }) })
    const source = connect(kysely, { timeouts: { statementMs: 60_000 } })
    expect(source.settings.borrowed).toBe('Kysely')

    await extract({ from: tableSource(source, { table: 'kysely_orders' }), to: postgresSink(db.warehouse, { mode: 'replace' }) })
    expect(await difference('kysely_orders')).toBe(0)
    await db.warehouseSql('drop table bronze.br_kysely_orders')
    await extract({ from: copySource(source, { table: 'kysely_orders' }), to: postgresSink(db.warehouse, { mode: 'replace' }) })
    expect(await difference('kysely_orders')).toBe(0)

    // A query of the caller's Kysely, run by pg-datakit on its borrowed client: pg-datakit's type map and settings.
    const sink = memorySink()
    await extract({
      from: querySource(source, kysely.selectFrom('kysely_orders').select(['id', 'amount']).where('id', '=', 7n), { name: 'seventh' }),
      to: sink,
    })
    expect(sink.rows).toEqual([{ id: 7n, amount: '7.000007' }])

    await source.close()
    expect(await callerSettings(pool, 2)).toEqual(['America/New_York SQL, DMY 123456ms', 'America/New_York SQL, DMY 123456ms'])
    const counted = await kysely
      .selectFrom('kysely_orders')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow()
    expect(String(counted.n)).toBe('2500') // the caller's own parsing: count is a string in pg's defaults
    await kysely.destroy()
  })

  it('a read left early destroys its borrowed client, which the lender then drops; the process and the lender go on', async () => {
    for (const lender of ['pg.Pool', 'Kysely'] as const) {
      const pool = callerPool(1)
      const kysely = new Kysely<{ kysely_orders: { id: bigint } }>({ dialect: new PostgresDialect({ pool }) })
      const source = lender === 'pg.Pool' ? connect(pool) : connect(kysely)
      let batches = 0
      for await (const batch of tableSource(source, { table: 'kysely_orders', batchSize: 100 })) {
        batches += batch.rows.length > 0 ? 1 : 0
        break // leaves the cursor's portal open: the client cannot go back as it is
      }
      expect(batches).toBe(1)
      await source.close()
      const { rows } = await pool.query<{ n: string }>('select count(*) as n from kysely_orders')
      expect(rows[0]?.n, lender).toBe('2500')
      await kysely.destroy()
    }
  })

  it('refuses a Kysely transaction and options that are not its own, with a ConfigError', async () => {
    const pool = callerPool(1)
    const kysely = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) })
    await kysely.transaction().execute((trx) => {
      expect(() => connect(trx)).toThrow(ConfigError)
      return Promise.resolve()
    })
    expect(() => connect(kysely, { pool: { max: 2 } } as never)).toThrow(ConfigError)
    expect(() => connect(pool, { settings: { 'work mem': '1MB' } })).toThrow(ConfigError)
    expect(() => connect(pool, 'url' as never)).toThrow(ConfigError)
    expect(() => connect({ url: db.sourceUrl }, { settings: {} } as never)).toThrow(ConfigError)
    expect(() => connect(42 as never)).toThrow(ConfigError)
    expect(() => connect({ connect: () => undefined } as never)).toThrow(ConfigError) // neither a pool nor options
    await kysely.destroy()
  })
})

describe("a borrowed pool's client options are the lender's, not pg-datakit's", () => {
  it('refuses a pool whose clients read binary results, with a ConfigError', async () => {
    await db.sourceSql('create table if not exists binary_lender (id int primary key)')
    // `binary` is a client option pg honours that its PoolConfig type leaves out.
    const pool = new pg.Pool({ connectionString: db.sourceUrl, max: 1, binary: true } as pg.PoolConfig)
    pool.on('error', () => undefined)
    pools.push(pool)
    const source = connect(pool)
    await expect(extract({ from: tableSource(source, { table: 'binary_lender' }), to: memorySink() })).rejects.toThrow(ConfigError)
    await source.close()
    // The lender's client went back whole.
    expect((await pool.query('select 1 as one')).rowCount).toBe(1)
  })

  it("does not apply the lender's client-side query_timeout to pg-datakit's reads (cursor, COPY, plain queries)", async () => {
    await db.sourceSql(`create table if not exists slow_lender as select g as id from generate_series(1, 10) g`)
    const pool = new pg.Pool({ connectionString: db.sourceUrl, max: 2, query_timeout: 200 })
    pool.on('error', () => undefined)
    pools.push(pool)
    const source = connect(pool)
    // Each read takes longer than the lender's 200 ms.
    const slow = db.source
      .kysely<{ slow_lender: { id: number } }>()
      .selectFrom('slow_lender')
      .select(['id'])
      .where(sql<boolean>`pg_sleep(0.05) is not null`)
    const sink = memorySink()
    await extract({ from: querySource(source, slow, { name: 'slow' }), to: sink })
    expect(sink.rows).toHaveLength(10)
    await extract({ from: copySource(source, { query: slow }), to: memorySink() })
    expect((await source.query<{ slept: string }>('select pg_sleep(0.3)::text as slept')).rows).toHaveLength(1)
    await source.close()
    // The lender's own queries keep its timeout.
    await expect(pool.query('select pg_sleep(0.5)')).rejects.toThrow(/timeout/i)
  })

  it("works beside the application's Kysely logger, which reads every query's SQL as a string", async () => {
    await makeOrders('logged_orders')
    const logged: string[] = []
    const kysely = new Kysely<Record<string, never>>({
      dialect: new PostgresDialect({ pool: callerPool() }),
      log: (event) => {
        logged.push(event.query.sql.trim())
      },
    })
    const source = connect(kysely)
    await extract({ from: tableSource(source, { table: 'logged_orders' }), to: postgresSink(db.warehouse, { mode: 'replace' }) })
    expect(await difference('logged_orders')).toBe(0)
    expect(logged.some((line) => line.includes('pg-datakit'))).toBe(true)
    await source.close()
    await kysely.destroy()
  })

  it('refuses, with a ConfigError, a Kysely instance over another copy of pg', async () => {
    // A second copy of pg's modules, as a project with two versions of pg installed has: its Client is not the one
    // pg-datakit knows how to find a client on.
    const require = createRequire(import.meta.url)
    const saved = Object.keys(require.cache).filter((key) => key.includes(`${sep}node_modules${sep}pg${sep}`))
    const kept = Object.fromEntries(saved.map((key) => [key, require.cache[key]]))
    for (const key of saved) delete require.cache[key]
    const otherPg = require('pg') as typeof pg
    Object.assign(require.cache, kept)
    expect(otherPg.Client).not.toBe(pg.Client)
    const pool = new otherPg.Pool({ connectionString: db.sourceUrl, max: 1 })
    pool.on('error', () => undefined)
    const kysely = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool }) })
    const source = connect(kysely)
    await expect(source.query('select 1')).rejects.toThrow(ConfigError)
    await source.close()
    await kysely.destroy()
  })
})
