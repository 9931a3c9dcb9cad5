import { describe, expect, it, vi } from 'vitest'
import {
  CheckpointConflictError,
  CheckpointWriteError,
  ConfigError,
  connect,
  ConnectionLostError,
  extract,
  incrementalSource,
  memoryCheckpoints,
  postgresCheckpoints,
  postgresSink,
  type CheckpointStore,
  type Transform,
} from '../src/index.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'
import { meetingPoint } from './support/transforms.js'

const db = useDatabases('incx')

async function createTable(table: string, cursorType = 'int') {
  await db.sourceSql(`drop table if exists ${table}`)
  await db.sourceSql(`create table ${table} (id int primary key, note text, c ${cursorType})`)
}

/** Distinct ids in bronze.br_<table> equal to the source's. */
const tablesEqualIds = async (table: string) => {
  const source = (await db.sourceSql(`select count(*)::int as n from ${table}`))[0]?.n
  const bronze = (await db.warehouseSql(`select count(distinct id)::int as n from bronze.br_${table}`))[0]?.n
  expect(bronze).toBe(source)
  return bronze as number
}

const ids = async (table: string) => (await db.warehouseSql(`select id from bronze.${table} order by id`)).map((row) => Number(row.id))

/** Runs `fn` with a second session on the source, ended afterwards. */
async function withSession<T>(fn: (session: Awaited<ReturnType<typeof clientFor>>) => Promise<T>): Promise<T> {
  const session = await clientFor(db.sourceUrl)
  try {
    return await fn(session)
  } finally {
    await session.end()
  }
}

describe('incrementalSource never loses a row', () => {
  it('delivers a row committed after a run with a cursor value equal to the checkpoint (date cursor, no lookback)', async () => {
    await createTable('same_day', 'date')
    await db.sourceSql(`insert into same_day values (1, 'a', '2024-03-01'), (2, 'b', '2024-03-01')`)
    const source = incrementalSource(db.source, { table: 'same_day', cursorColumn: 'c' })
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    expect((await extract({ from: source, to: sink })).rows).toBe(2)
    await db.sourceSql(`insert into same_day values (3, 'c', '2024-03-01')`)
    expect((await extract({ from: source, to: sink })).rows).toBe(1)
    expect((await extract({ from: source, to: sink })).rows).toBe(0)
    expect(await ids('br_same_day')).toEqual([1, 2, 3])
  })

  it.each([
    ['a savepoint released', `savepoint s; insert into {t} values (20, 'late', 5); release savepoint s`],
    ['a PL/pgSQL EXCEPTION block', `do $$ begin begin insert into {t} values (20, 'late', 5); exception when others then null; end; end $$`],
    ['a savepoint with a NULL cursor', `savepoint s; insert into {t} values (20, 'late', null); release savepoint s`],
    [
      'a rolled-back savepoint, then a new one',
      `savepoint a; insert into {t} values (21, 'gone', 5); rollback to savepoint a; savepoint b; insert into {t} values (20, 'late', 5); release savepoint b`,
    ],
  ])('delivers rows written inside %s of a transaction open during a run, with or without lookback', async (_name, write) => {
    for (const lookback of [undefined, 100]) {
      const table = `sp_${lookback ?? 'none'}_${Math.random().toString(36).slice(2, 8)}`
      await createTable(table)
      await db.sourceSql(`insert into ${table} select g, 'early', g from generate_series(1, 10) g`)
      const source = incrementalSource(db.source, { table, cursorColumn: 'c', ...(lookback === undefined ? {} : { lookback }) })
      const sink = postgresSink(db.warehouse, { mode: 'append' })
      await extract({ from: source, to: sink })
      await withSession(async (session) => {
        await session.query('begin')
        await session.query(`insert into ${table} values (30, 'top', 6)`)
        await session.query(write.replaceAll('{t}', table))
        await db.sourceSql(`insert into ${table} values (11, 'after', 11)`)
        await extract({ from: source, to: sink })
        await session.query('commit')
      })
      await extract({ from: source, to: sink })
      expect(await ids(`br_${table}`)).toEqual([...Array.from({ length: 11 }, (_, index) => index + 1), 20, 30])
    }
  })

  it('delivers a late commit whose transaction took its xid after a younger one committed (T1 begins, T2 commits, T1 writes, a run, T1 commits)', async () => {
    await createTable('late', 'timestamptz')
    await db.sourceSql(`insert into late values (1, 'early', now() - interval '1 hour')`)
    const source = incrementalSource(db.source, { table: 'late', cursorColumn: 'c' })
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    await extract({ from: source, to: sink })
    await withSession(async (t1) => {
      await t1.query('begin')
      await t1.query('select now()') // T1's now() is fixed here; it has no xid yet
      await db.sourceSql(`insert into late values (2, 'T2', now())`) // T2 takes an xid, stamps a later now(), commits
      await t1.query(`insert into late values (3, 'T1', now())`) // T1 takes a younger xid, stamps the older now()
      expect((await extract({ from: source, to: sink })).rows).toBe(1)
      await t1.query('commit')
    })
    expect((await extract({ from: source, to: sink })).rows).toBe(1)
    expect(await ids('br_late')).toEqual([1, 2, 3])
  })

  it('delivers a row a transaction stamps with an old value after a run has passed it (no lookback)', async () => {
    await createTable('backdated')
    await db.sourceSql(`insert into backdated select g, 'x', g * 10 from generate_series(1, 10) g`)
    const source = incrementalSource(db.source, { table: 'backdated', cursorColumn: 'c' })
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    await extract({ from: source, to: sink })
    await db.sourceSql(`insert into backdated values (11, 'old value', 15)`)
    expect((await extract({ from: source, to: sink })).rows).toBe(1)
    expect((await extract({ from: source, to: sink })).rows).toBe(0)
    expect((await db.warehouseSql(`select count(*)::int as n from bronze.br_backdated`))[0]).toEqual({ n: 11 })
  })
})

describe('incremental runs that fail midway', () => {
  it('a warehouse backend terminated mid-run: the run is retried on the same small pools and lands every row once', async () => {
    await createTable('killed_wh')
    await db.sourceSql(`insert into killed_wh select g, 'x', g from generate_series(1, 5000) g`)
    const source = connect({ url: db.sourceUrl, pool: { max: 1, acquireTimeoutMs: 5_000 } })
    const warehouse = connect({ url: db.warehouseUrl, applicationName: 'killed-wh', pool: { max: 1, acquireTimeoutMs: 5_000 } })
    let kills = 0
    const killOnce: Transform = {
      name: 'killOnce',
      shape: (input) => input,
      async *apply(batches) {
        for await (const batch of batches) {
          if (kills++ === 0) {
            await db.warehouseSql(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'killed-wh'`)
          }
          yield batch
        }
      },
    }
    try {
      const from = incrementalSource(source, { table: 'killed_wh', cursorColumn: 'c', batchSize: 500 })
      const to = postgresSink(warehouse, { mode: 'append' })
      const report = await extract({ from, through: [killOnce], to, retry: { attempts: 3, initialDelayMs: 10 } })
      expect(report.rows).toBe(5000)
      expect((await extract({ from, to })).rows).toBe(0)
      expect((await db.warehouseSql('select count(*)::int as n, count(distinct id)::int as ids from bronze.br_killed_wh'))[0]).toEqual({ n: 5000, ids: 5000 })
      expect((await source.query<{ one: number }>('select 1 as one')).rows[0]?.one).toBe(1)
    } finally {
      await source.close()
      await warehouse.close()
    }
  })
})

describe('incremental cases found by an adversarial user', () => {
  it('a column added at the source continues the same pipeline (no second copy in append)', async () => {
    await createTable('grows')
    await db.sourceSql(`insert into grows select g, 'x', g from generate_series(1, 1000) g`)
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    const from = incrementalSource(db.source, { table: 'grows', cursorColumn: 'c' })
    await extract({ from, to: sink })
    await db.sourceSql(`alter table grows add column extra text`)
    await db.sourceSql(`insert into grows values (1001, 'y', 1001, 'new')`)
    expect((await extract({ from, to: sink })).rows).toBe(1)
    expect((await db.warehouseSql('select count(*)::int as n, count(extra)::int as extra from bronze.br_grows'))[0]).toEqual({ n: 1001, extra: 1 })
  })

  it('the warehouse reached as localhost or 127.0.0.1 is one target (one checkpoint)', async () => {
    await createTable('wh_hosts')
    await db.sourceSql(`insert into wh_hosts select g, 'x', g from generate_series(1, 50) g`)
    const from = incrementalSource(db.source, { table: 'wh_hosts', cursorColumn: 'c' })
    await extract({ from, to: postgresSink(db.warehouse, { mode: 'append' }) })
    const url = new URL(db.warehouseUrl)
    url.hostname = url.hostname === 'localhost' ? '127.0.0.1' : 'localhost'
    const other = connect(url.toString())
    try {
      expect((await extract({ from, to: postgresSink(other, { mode: 'append' }) })).rows).toBe(0)
    } finally {
      await other.close()
    }
  })

  it('delivers the rows of a partition attached after a run, though their xids and cursor values are old', async () => {
    await db.sourceSql(`create table ev (id int, day date, c timestamptz default clock_timestamp(), primary key (id, day)) partition by range (day)`)
    await db.sourceSql(`create table ev_jan partition of ev for values from ('2024-01-01') to ('2024-02-01')`)
    await db.sourceSql(`insert into ev (id, day) select g, '2024-01-10' from generate_series(1, 100) g`)
    await db.sourceSql(`create table ev_feb (like ev including defaults)`)
    await db.sourceSql(`insert into ev_feb (id, day) select g, '2024-02-10' from generate_series(101, 200) g`)
    await db.sourceSql(`insert into ev (id, day) select g, '2024-01-20' from generate_series(201, 210) g`)
    const from = incrementalSource(db.source, { table: 'ev', cursorColumn: 'c' })
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    expect((await extract({ from, to: sink })).rows).toBe(110)
    await db.sourceSql(`alter table ev attach partition ev_feb for values from ('2024-02-01') to ('2024-03-01')`)
    expect((await extract({ from, to: sink })).rows).toBe(100)
    expect((await extract({ from, to: sink })).rows).toBe(0)
    expect((await db.warehouseSql('select count(*)::int as n, count(distinct id)::int as ids from bronze.br_ev'))[0]).toEqual({ n: 210, ids: 210 })
  })

  it.each([
    ['uuid', `md5(g::text)::uuid`],
    ['boolean', `g % 2 = 0`],
    ['int4range', `int4range(g, g + 10)`],
    ['"char"', `chr(65 + g % 26)::"char"`],
    ['a domain NOT NULL over timestamptz', `'2024-01-01'::timestamptz + g * interval '1 minute'`],
  ])('reads with a cursor of type %s (ordered, though it has no max())', async (type, value) => {
    const table = `typed_${Math.random().toString(36).slice(2, 8)}`
    let columnType = type
    if (type.startsWith('a domain')) {
      await db.sourceSql(`do $$ begin create domain ts_nn as timestamptz not null; exception when duplicate_object then null; end $$`)
      columnType = 'ts_nn'
    }
    await db.sourceSql(`create table ${table} (id int primary key, c ${columnType})`)
    await db.sourceSql(`insert into ${table} select g, ${value} from generate_series(1, 40) g`)
    const from = incrementalSource(db.source, { table, cursorColumn: 'c' })
    const sink = postgresSink(db.warehouse, { mode: 'merge' })
    expect((await extract({ from, to: sink })).rows).toBe(40)
    await db.sourceSql(`insert into ${table} select g, ${value} from generate_series(41, 45) g`)
    const second = await extract({ from, to: sink })
    expect(second.rows).toBeGreaterThanOrEqual(5)
    expect(await tablesEqualIds(table)).toBe(45)
  })

  it('refuses, before anything is written, a lookback the cursor type cannot go back by', async () => {
    for (const [type, lookback] of [
      ['text', 5],
      ['int4range', 5],
    ] as const) {
      const table = `lb_${type}`
      await db.sourceSql(`create table ${table} (id int primary key, c ${type})`)
      const error = await extract({
        from: incrementalSource(db.source, { table, cursorColumn: 'c', lookback }),
        to: postgresSink(db.warehouse, { mode: 'append' }),
      }).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ConfigError)
      expect(await db.warehouseSql(`select to_regclass('bronze.br_${table}') is null as absent`)).toEqual([{ absent: true }])
    }
  })

  it('does not move its horizon back when another database\u2019s transaction is prepared (delivers nothing twice)', async () => {
    const prepared = await db.sourceSql(`select current_setting('max_prepared_transactions')::int as n`)
    if ((prepared[0]?.n as number) === 0) return // the server was started without prepared transactions
    await createTable('prep')
    await db.sourceSql(`insert into prep select g, 'a', g from generate_series(1, 10) g`)
    const from = incrementalSource(db.source, { table: 'prep', cursorColumn: 'c' })
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    const other = await clientFor(db.warehouseUrl)
    try {
      await other.query('begin')
      await other.query(`select txid_current()`) // an xid in another database, older than the rows that follow
      await db.sourceSql(`insert into prep select g, 'b', g from generate_series(11, 20) g`)
      expect((await extract({ from, to: sink })).rows).toBe(20)
      await other.query(`prepare transaction 'pgdk_other_db'`)
      await db.sourceSql(`insert into prep select g, 'c', g from generate_series(21, 30) g`)
      expect((await extract({ from, to: sink })).rows).toBe(10)
      await db.warehouseSql(`commit prepared 'pgdk_other_db'`)
      expect((await extract({ from, to: sink })).rows).toBe(0)
    } finally {
      await db.warehouseSql(`rollback prepared 'pgdk_other_db'`).catch(() => undefined)
      await other.end()
    }
    expect((await db.warehouseSql('select count(*)::int as n from bronze.br_prep'))[0]).toEqual({ n: 30 })
  })
})

describe('incremental runs on one database', () => {
  it('works with the source database as its own warehouse through one connection of two clients (one reads while one writes)', async () => {
    await createTable('same_db')
    await db.sourceSql(`insert into same_db select g, 'x', g from generate_series(1, 100) g`)
    const only = connect({ url: db.sourceUrl, pool: { max: 2, acquireTimeoutMs: 3_000 } })
    try {
      const from = incrementalSource(only, { table: 'same_db', cursorColumn: 'c' })
      expect((await extract({ from, to: postgresSink(only, { mode: 'merge' }) })).rows).toBe(100)
      await db.sourceSql(`update same_db set note = 'y' where id <= 10`)
      expect((await extract({ from, to: postgresSink(only, { mode: 'merge' }) })).rows).toBe(10)
    } finally {
      await only.close()
    }
  })
})

describe('incremental checkpoints belong to one pipeline', () => {
  it('keeps separate checkpoints for another target and another filter, so neither skips the other', async () => {
    await createTable('shared')
    await db.sourceSql(`insert into shared select g, case when g % 2 = 0 then 'even' else 'odd' end, g from generate_series(1, 100) g`)
    const all = incrementalSource(db.source, { table: 'shared', cursorColumn: 'c' })
    const even = incrementalSource(db.source, { table: 'shared', cursorColumn: 'c', where: { note: 'even' } })
    await extract({ from: all, to: postgresSink(db.warehouse, { mode: 'append' }) })
    expect((await extract({ from: all, to: postgresSink(db.warehouse, { mode: 'append', table: 'shared_copy' }) })).rows).toBe(100)
    expect((await extract({ from: even, to: postgresSink(db.warehouse, { mode: 'append', table: 'shared_even' }) })).rows).toBe(50)
    // An explicit name is the key: the same name continues where it left off, whatever the target.
    const named = incrementalSource(db.source, { table: 'shared', cursorColumn: 'c', name: 'nightly' })
    expect((await extract({ from: named, to: postgresSink(db.warehouse, { mode: 'append', table: 'shared_named' }) })).rows).toBe(100)
    expect((await extract({ from: named, to: postgresSink(db.warehouse, { mode: 'append', table: 'shared_named' }) })).rows).toBe(0)
  })

  it('starts over when the bronze table was dropped, restoring every row', async () => {
    await createTable('dropped')
    await db.sourceSql(`insert into dropped select g, 'x', g from generate_series(1, 1000) g`)
    const source = incrementalSource(db.source, { table: 'dropped', cursorColumn: 'c' })
    const sink = postgresSink(db.warehouse, { mode: 'merge' })
    await extract({ from: source, to: sink })
    await db.sourceSql(`insert into dropped values (1001, 'y', 1001)`)
    await db.warehouseSql('drop table bronze.br_dropped')
    expect((await extract({ from: source, to: sink })).rows).toBe(1001)
    expect((await db.warehouseSql('select count(*)::int as n from bronze.br_dropped'))[0]).toEqual({ n: 1001 })
  })

  it('is keyed by the database, not the URL text: localhost and 127.0.0.1 continue the same checkpoint', async () => {
    await createTable('hosts')
    await db.sourceSql(`insert into hosts select g, 'x', g from generate_series(1, 10) g`)
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    await extract({ from: incrementalSource(db.source, { table: 'hosts', cursorColumn: 'c' }), to: sink })
    const url = new URL(db.sourceUrl)
    url.hostname = url.hostname === 'localhost' ? '127.0.0.1' : 'localhost'
    const other = connect(url.toString())
    try {
      expect((await extract({ from: incrementalSource(other, { table: 'hosts', cursorColumn: 'c' }), to: sink })).rows).toBe(0)
    } finally {
      await other.close()
    }
    expect((await db.warehouseSql('select count(*)::int as n from bronze.br_hosts'))[0]).toEqual({ n: 10 })
  })

  it('upgrades a checkpoint table made by 0.1 in place and starts its extractions over once', async () => {
    await createTable('old_table')
    await db.sourceSql(`insert into old_table select g, 'x', g from generate_series(1, 30) g`)
    await db.warehouseSql(`create schema old01`)
    await db.warehouseSql(`create table old01.extraction_checkpoints (
      source text not null, schema_name text not null, table_name text not null,
      cursor_column text not null, cursor_value text, lower_value text, snapshot text not null,
      run_id text not null, rows bigint not null, status text not null,
      started_at timestamptz not null, updated_at timestamptz not null,
      primary key (source, schema_name, table_name))`)
    await db.warehouseSql(
      `insert into old01.extraction_checkpoints values ('postgresql://x@h:5432/db', 'public', 'old_table', 'c', '30', null, '1:1:', 'old', 30, 'committed', now(), now())`,
    )
    const from = incrementalSource(db.source, { table: 'old_table', cursorColumn: 'c' })
    const sink = postgresSink(db.warehouse, { schema: 'old01', mode: 'append' })
    expect((await extract({ from, to: sink })).rows).toBe(30)
    expect((await extract({ from, to: sink })).rows).toBe(0)
    expect(await db.warehouseSql(`select count(*)::int as n from old01.extraction_checkpoints`)).toEqual([{ n: 2 }])
  })

  it("refuses mode 'replace' for an incremental source before anything is written", async () => {
    await createTable('replaced')
    await db.sourceSql(`insert into replaced values (1, 'x', 1)`)
    const error = await extract({ from: incrementalSource(db.source, { table: 'replaced', cursorColumn: 'c' }), to: postgresSink(db.warehouse) }).catch(
      (caught: unknown) => caught,
    )
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).message).toMatch(/merge.*append/)
    expect(await db.warehouseSql(`select to_regclass('bronze.br_replaced') is null as absent`)).toEqual([{ absent: true }])
  })
})

describe('incremental checkpoints written outside the sink', () => {
  it('writes checkpoints of a store on another connection to the same warehouse in the sink\u2019s transaction', async () => {
    await createTable('same_wh')
    await db.sourceSql(`insert into same_wh select g, 'x', g from generate_series(1, 20) g`)
    const other = connect(db.warehouseUrl)
    try {
      const store = postgresCheckpoints(other)
      const spied = { ...store, write: vi.fn(store.write.bind(store)) }
      const from = incrementalSource(db.source, { table: 'same_wh', cursorColumn: 'c', checkpoints: spied })
      expect((await extract({ from, to: postgresSink(db.warehouse, { mode: 'append' }) })).rows).toBe(20)
      expect((await extract({ from, to: postgresSink(db.warehouse, { mode: 'append' }) })).rows).toBe(0)
      expect(spied.write).not.toHaveBeenCalled()
    } finally {
      await other.close()
    }
  })

  /**
   * A store whose first `failures` final writes (after the sink's commit) fail with `error`; the claim a run takes
   * before the commit (run id `<run>:committing`) works.
   */
  function flakyStore(failures: number, error: () => Error): CheckpointStore & { writes: number } {
    const inner = memoryCheckpoints()
    let left = failures
    return {
      name: 'flaky checkpoints',
      writes: 0,
      read: (key) => inner.read(key),
      async write(key, next, expected) {
        if (!next.runId.endsWith(':committing')) {
          this.writes++
          if (left-- > 0) throw error()
        }
        await inner.write(key, next, expected)
      },
    }
  }

  it('retries a checkpoint write that failed after the commit on its own, never the pipeline (no duplicate rows)', async () => {
    await createTable('flaky')
    await db.sourceSql(`insert into flaky select g, 'x', g from generate_series(1, 500) g`)
    const store = flakyStore(1, () => new ConnectionLostError('connection lost writing the checkpoint'))
    const source = incrementalSource(db.source, { table: 'flaky', cursorColumn: 'c', checkpoints: store })
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    expect((await extract({ from: source, to: sink })).rows).toBe(500)
    expect(store.writes).toBe(2)
    expect((await db.warehouseSql('select count(*)::int as n from bronze.br_flaky'))[0]).toEqual({ n: 500 })
    expect((await extract({ from: source, to: sink })).rows).toBe(0)
  })

  it('fails with CheckpointWriteError, not a re-run, when the checkpoint cannot be written after the commit', async () => {
    await createTable('unwritable')
    await db.sourceSql(`insert into unwritable select g, 'x', g from generate_series(1, 500) g`)
    const store = flakyStore(100, () => new ConnectionLostError('connection lost writing the checkpoint'))
    const source = incrementalSource(db.source, { table: 'unwritable', cursorColumn: 'c', checkpoints: store })
    const error = await extract({ from: source, to: postgresSink(db.warehouse, { mode: 'append' }) }).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(CheckpointWriteError)
    expect((error as CheckpointWriteError).retryable).toBe(false)
    expect((error as Error).message).toMatch(/committed to bronze\.br_unwritable/)
    expect((await db.warehouseSql('select count(*)::int as n from bronze.br_unwritable'))[0]).toEqual({ n: 500 })
  })

  it('fails the losing run of two racing ones before its rows are committed (memory store, append)', async () => {
    await createTable('race_mem')
    await db.sourceSql(`insert into race_mem values (1, 'a', 1)`)
    const store = memoryCheckpoints()
    const source = incrementalSource(db.source, { table: 'race_mem', cursorColumn: 'c', checkpoints: store })
    const sink = postgresSink(db.warehouse, { mode: 'append' })
    await extract({ from: source, to: sink })
    await db.sourceSql(`insert into race_mem values (2, 'b', 2)`)
    const meet = meetingPoint(2)
    const run = () => extract({ from: source, through: [meet], to: sink, retry: false })
    const results = await Promise.allSettled([run(), run()])
    const failures = results.filter((result) => result.status === 'rejected').map((result) => result.reason)
    expect(failures).toHaveLength(1)
    expect(failures[0]).toBeInstanceOf(CheckpointConflictError)
    expect(await ids('br_race_mem')).toEqual([1, 2])
  })
})
