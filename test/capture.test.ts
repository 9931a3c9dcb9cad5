import { describe, expect, it } from 'vitest'
import { captureChanges, ConnectionLostError, type CaptureReport } from '../src/index.js'
import { ensurePublication, ensureSlot, slotStatus } from '../src/cdc.js'
import { captureUntil as captureUntilQuiet } from './support/capture.js'
import { checksum } from './support/checksum.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('capture')

/** A capture into the test warehouse until `changes` have landed (5 s of quiet is a margin for a loaded machine). */
function captureUntil(slot: string, publication: string, changes: number): Promise<CaptureReport> {
  return captureUntilQuiet({ source: db.source, warehouse: db.warehouse, slot, publication, changes })
}

describe('captureChanges', () => {
  it('lands inserts, updates (key changed and not), deletes, truncates and messages in the change log, once', async () => {
    await db.sourceSql(`create table accounts (id int primary key, owner text, balance numeric(12,2), notes text)`)
    await db.sourceSql(`alter table accounts alter column notes set storage external`)
    await ensurePublication(db.source, 'pub_accounts', [{ table: 'accounts' }])
    // Changes are captured from the slot's creation on.
    await ensureSlot(db.source, 'slot_accounts')
    await db.sourceSql(`insert into accounts values (1, 'ann', 10.50, repeat('n', 50000)), (2, 'bob', 0, null)`)
    await db.sourceSql(`update accounts set balance = balance + 1 where id = 1`)
    await db.sourceSql(`update accounts set id = 20 where id = 2`)
    await db.sourceSql(`delete from accounts where id = 20`)
    await db.sourceSql(`select pg_logical_emit_message(true, 'audit', 'checked')`)
    await db.sourceSql(`truncate accounts`)
    const report = await captureUntil('slot_accounts', 'pub_accounts', 7)
    expect(report.changes).toBe(7)

    const log = await db.warehouseSql(
      `select operation, table_name, key::text, data::text, old_data::text, unchanged_columns
         from bronze.cdc_changes order by commit_lsn, seq`,
    )
    expect(log).toEqual([
      {
        operation: 'insert',
        table_name: 'accounts',
        key: '{"id": 1}',
        data: expect.stringContaining('"balance": "10.50"'),
        old_data: null,
        unchanged_columns: [],
      },
      {
        operation: 'insert',
        table_name: 'accounts',
        key: '{"id": 2}',
        data: '{"id": 2, "notes": null, "owner": "bob", "balance": "0.00"}',
        old_data: null,
        unchanged_columns: [],
      },
      // The TOASTed notes were not sent: marked unchanged, not NULL, and absent from data.
      {
        operation: 'update',
        table_name: 'accounts',
        key: '{"id": 1}',
        data: '{"id": 1, "owner": "ann", "balance": "11.50"}',
        old_data: null,
        unchanged_columns: ['notes'],
      },
      {
        operation: 'update',
        table_name: 'accounts',
        key: '{"id": 2}',
        data: '{"id": 20, "notes": null, "owner": "bob", "balance": "0.00"}',
        old_data: '{"id": 2, "notes": null, "owner": null, "balance": null}',
        unchanged_columns: [],
      },
      {
        operation: 'delete',
        table_name: 'accounts',
        key: '{"id": 20}',
        data: null,
        old_data: '{"id": 20, "notes": null, "owner": null, "balance": null}',
        unchanged_columns: [],
      },
      { operation: 'message', table_name: null, key: null, data: '{"prefix": "audit", "content": "checked"}', old_data: null, unchanged_columns: [] },
      {
        operation: 'truncate',
        table_name: 'accounts',
        key: null,
        data: '{"cascade": false, "restart_identity": false}',
        old_data: null,
        unchanged_columns: [],
      },
    ])

    // The slot was acknowledged exactly up to what the warehouse holds.
    const [state] = await db.warehouseSql(`select last_commit_end_lsn::text as lsn from bronze.cdc_state where slot = 'slot_accounts'`)
    const status = await slotStatus(db.source, 'slot_accounts')
    expect(status?.confirmedFlushLsn).toBe(state?.lsn)
    expect(report.lastCommitEndLsn).toBe(state?.lsn)
  })

  it('resumes after a stop: later changes land, earlier ones are not written twice', async () => {
    await db.sourceSql(`insert into accounts select g, 'o' || g, g, null from generate_series(100, 199) g`)
    const first = await captureUntil('slot_accounts', 'pub_accounts', 100)
    expect(first.changes).toBe(100)
    await db.sourceSql(`update accounts set balance = 0 where id between 100 and 149`)
    const second = await captureUntil('slot_accounts', 'pub_accounts', 50)
    expect(second.changes).toBe(50)
    const [counts] = await db.warehouseSql(
      `select count(*)::int as n, count(distinct (commit_lsn, seq))::int as distinct_changes,
              count(*) filter (where operation = 'update' and table_name = 'accounts' and (key->>'id')::int >= 100)::int as updates
         from bronze.cdc_changes`,
    )
    expect(counts).toEqual({ n: 157, distinct_changes: 157, updates: 50 })
  })

  it('applies changes to bronze.br_<table>: key changes, deletes, truncates, and unchanged TOAST values kept', async () => {
    await db.sourceSql(`create table profiles (id int primary key, name text, bio text, score numeric(6,2))`)
    await db.sourceSql(`alter table profiles alter column bio set storage external`)
    await ensurePublication(db.source, 'pub_profiles', [{ table: 'profiles' }])
    await ensureSlot(db.source, 'slot_profiles')
    // Each capture stops 500 ms after its last batch (or after 5 s without any).
    const capture = () =>
      captureUntilQuiet({ source: db.source, warehouse: db.warehouse, slot: 'slot_profiles', publication: 'pub_profiles', apply: true, idleMs: 500 })
    await db.sourceSql(`insert into profiles select g, 'p' || g, repeat('b', 40000) || g, g from generate_series(1, 20) g`)
    await db.sourceSql(`update profiles set score = score * 2 where id <= 10`) // bio not sent: must stay
    await db.sourceSql(`update profiles set id = id + 100 where id in (3, 4)`)
    await db.sourceSql(`delete from profiles where id in (5, 6)`)
    await capture()
    const columns = ['id', 'name', 'bio', 'score']
    expect(await checksum(db.warehouseDatabase, 'bronze.br_profiles', columns)).toEqual(await checksum(db.sourceDatabase, 'profiles', columns))
    await db.sourceSql(`truncate profiles`)
    await db.sourceSql(`insert into profiles values (1, 'again', 'short', 1)`)
    await capture()
    expect(await checksum(db.warehouseDatabase, 'bronze.br_profiles', columns)).toEqual(await checksum(db.sourceDatabase, 'profiles', columns))
  })

  it('applies runs of changes in few statements with the result of one statement per change', async () => {
    await db.sourceSql(`create table runs_a (id int primary key, v text, n int)`)
    await db.sourceSql(`create table runs_b (id int primary key, v text)`)
    await ensurePublication(db.source, 'pub_runs', [{ table: 'runs_a' }, { table: 'runs_b' }])
    await ensureSlot(db.source, 'slot_runs')
    // 12,000 inserts in one transaction: a run longer than one statement takes.
    await db.sourceSql(`insert into runs_a select g, 'v' || g, 0 from generate_series(1, 12000) g`)
    const client = await clientFor(db.sourceUrl)
    try {
      await client.query('begin')
      for (let step = 1; step <= 3; step++) await client.query(`update runs_a set n = $1, v = $2 where id = 1`, [step, `step ${step}`])
      await client.query(`delete from runs_a where id = 2`)
      await client.query(`insert into runs_a values (2, 'back', 7)`)
      await client.query(`update runs_a set n = 8 where id = 2`)
      await client.query(`update runs_a set id = 30003 where id = 3`)
      await client.query(`update runs_a set n = 9 where id = 30003`)
      await client.query(`insert into runs_a values (3, 'new three', 3)`)
      await client.query(`delete from runs_a where id in (4, 6)`)
      // Two tables interleaved: each change closes the other table's run.
      await client.query(`insert into runs_b values (1, 'b1')`)
      await client.query(`update runs_a set n = 50 where id = 5`)
      await client.query(`insert into runs_b values (2, 'b2')`)
      await client.query(`update runs_a set n = 51 where id = 5`)
      await client.query(`delete from runs_b where id = 1`)
      await client.query(`delete from runs_a where id = 8`)
      await client.query(`delete from runs_a where id = 7`)
      await client.query(`insert into runs_a values (7, 'seven again', 77)`)
      await client.query('commit')
      // Many small transactions touching both tables, with keys updated again and again, inserted and deleted.
      for (let step = 0; step < 200; step++) {
        await client.query('begin')
        await client.query(`update runs_a set n = n + 1 where id = $1`, [10 + (step % 17)])
        await client.query(`insert into runs_b values ($1, 't') on conflict (id) do update set v = 'again'`, [1000 + (step % 40)])
        await client.query(`update runs_b set v = $1 where id = $2`, [`u${step}`, 1000 + (step % 5)])
        if (step % 3 === 0) await client.query(`delete from runs_b where id = $1`, [1000 + ((step * 7) % 40)])
        await client.query(`update runs_a set v = $1 where id = $2`, [`w${step}`, 10 + (step % 13)])
        await client.query('commit')
      }
    } finally {
      await client.end()
    }
    await captureUntilQuiet({ source: db.source, warehouse: db.warehouse, slot: 'slot_runs', publication: 'pub_runs', apply: true, idleMs: 1_500 })
    expect(await checksum(db.warehouseDatabase, 'bronze.br_runs_a', ['id', 'v', 'n'])).toEqual(await checksum(db.sourceDatabase, 'runs_a', ['id', 'v', 'n']))
    expect(await checksum(db.warehouseDatabase, 'bronze.br_runs_b', ['id', 'v'])).toEqual(await checksum(db.sourceDatabase, 'runs_b', ['id', 'v']))
    expect(await db.warehouseSql(`select id, v, n from bronze.br_runs_a where id in (1, 2, 3, 5, 7, 30003) order by id`)).toEqual([
      { id: 1, v: 'step 3', n: 3 },
      { id: 2, v: 'back', n: 8 },
      { id: 3, v: 'new three', n: 3 },
      { id: 5, v: 'v5', n: 51 },
      { id: 7, v: 'seven again', n: 77 },
      { id: 30003, v: 'v3', n: 9 },
    ])
  })

  it('applies REPLICA IDENTITY FULL tables: by the primary key when there is one, by all old values (duplicates too) when not', async () => {
    await db.sourceSql(`create table full_keyed (id int primary key, doc json, note text)`)
    await db.sourceSql(`create table full_bag (label text, doc json, spot point, amount numeric)`)
    await db.sourceSql(`alter table full_keyed replica identity full`)
    await db.sourceSql(`alter table full_bag replica identity full`)
    await ensurePublication(db.source, 'pub_full', [{ table: 'full_keyed' }, { table: 'full_bag' }])
    await ensureSlot(db.source, 'slot_full')
    await db.sourceSql(`insert into full_keyed select g, json_build_object('n', g), null from generate_series(1, 10) g`)
    // Identical rows: a delete or update of one of them touches exactly one.
    await db.sourceSql(
      `insert into full_bag values ('twin', '{"a": 1}', '(1,2)', 1.50), ('twin', '{"a": 1}', '(1,2)', 1.50), ('twin', '{"a": 1}', '(1,2)', 1.50), ('solo', null, null, null)`,
    )
    await db.sourceSql(`update full_keyed set note = 'changed', doc = '{"n": [1, 2]}' where id <= 3`)
    await db.sourceSql(`update full_keyed set id = id + 100 where id in (4, 5)`)
    await db.sourceSql(`delete from full_keyed where id = 6`)
    await db.sourceSql(`delete from full_bag where ctid = (select ctid from full_bag where label = 'twin' limit 1)`)
    await db.sourceSql(`update full_bag set amount = 2 where ctid = (select ctid from full_bag where label = 'twin' limit 1)`)
    await db.sourceSql(`update full_bag set label = 'alone' where label = 'solo'`)
    await captureUntilQuiet({ source: db.source, warehouse: db.warehouse, slot: 'slot_full', publication: 'pub_full', apply: true, idleMs: 500 })
    const keyed = ['id', 'doc', 'note']
    const bag = ['label', 'doc', 'spot', 'amount']
    expect(await checksum(db.warehouseDatabase, 'bronze.br_full_keyed', keyed)).toEqual(await checksum(db.sourceDatabase, 'full_keyed', keyed))
    expect(await checksum(db.warehouseDatabase, 'bronze.br_full_bag', bag)).toEqual(await checksum(db.sourceDatabase, 'full_bag', bag))
    const keys = await db.warehouseSql(
      `select c.relname as table, array(select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) where i.indrelid = c.oid and i.indisprimary)::text[] as key
         from pg_class c where c.relname in ('br_full_keyed', 'br_full_bag') order by 1`,
    )
    expect(keys).toEqual([
      { table: 'br_full_bag', key: [] },
      { table: 'br_full_keyed', key: ['id'] },
    ])
  })

  it('decodes a large backlog exactly (messages queued while batches are written)', async () => {
    await db.sourceSql(`create table backlog (id int primary key, label text)`)
    await ensurePublication(db.source, 'pub_backlog', [{ table: 'backlog' }])
    await ensureSlot(db.source, 'slot_backlog')
    await db.sourceSql(`insert into backlog select g, 'row ' || g || repeat('.', g % 50) from generate_series(1, 30000) g`)
    await db.sourceSql(`update backlog set label = label || '!' where id % 3 = 0`)
    const report = await captureUntil('slot_backlog', 'pub_backlog', 40_000)
    expect(report.changes).toBe(40_000)
    const [check] = await db.warehouseSql(
      `select count(*)::int as n, count(distinct (data->>'id'))::int as ids,
              count(*) filter (where data->>'label' = 'row ' || (data->>'id') || repeat('.', (data->>'id')::int % 50) || case when operation = 'update' then '!' else '' end)::int as exact
         from bronze.cdc_changes where table_name = 'backlog'`,
    )
    expect(check).toEqual({ n: 40_000, ids: 30_000, exact: 40_000 })
  })

  it('never acknowledges a commit the warehouse does not hold, and lands every change once after the walsender is killed', async () => {
    await db.sourceSql(`create table ledger (id int primary key, amount int)`)
    await ensurePublication(db.source, 'pub_ledger', [{ table: 'ledger' }])
    await ensureSlot(db.source, 'slot_ledger')
    const capture = captureChanges(db.source, { slot: 'slot_ledger', publication: 'pub_ledger', to: db.warehouse, maxBatchMs: 50 }).catch(
      (error: unknown) => error,
    )
    const walsenders = async () =>
      (await db.sourceSql(`select count(*)::int as n from pg_stat_activity where backend_type = 'walsender' and datname = current_database()`))[0]?.n
    await waitFor(async () => (await walsenders()) === 1)
    const before = (await slotStatus(db.source, 'slot_ledger'))?.confirmedFlushLsn

    // The warehouse write of the next batch is held by a lock while the walsender is terminated.
    const locker = await clientFor(db.warehouseUrl)
    await locker.query('begin')
    await locker.query('lock table bronze.cdc_state in access exclusive mode')
    try {
      await db.sourceSql(`insert into ledger select g, g from generate_series(1, 10) g`)
      await waitFor(
        async () =>
          (await db.warehouseSql(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()`))[0]?.n ===
          1,
      )
      let settled = false
      // `capture` never rejects (its error is its value): the second handler only says so.
      capture.then(
        () => (settled = true),
        () => undefined,
      )
      await db.sourceSql(`select pg_terminate_backend(pid) from pg_stat_activity where backend_type = 'walsender' and datname = current_database()`)
      // Nothing was acknowledged while the rows were not in the warehouse.
      expect((await slotStatus(db.source, 'slot_ledger'))?.confirmedFlushLsn).toBe(before)
      // The capture does not return while its warehouse write is still running (its client is not handed back busy).
      await new Promise((resolve) => setTimeout(resolve, 500))
      expect(settled).toBe(false)
    } finally {
      await locker.query('rollback')
      await locker.end()
    }
    const failure = await capture
    expect(failure).toBeInstanceOf(ConnectionLostError)
    // The held batch finished before the capture returned.
    expect(await db.warehouseSql(`select count(*)::int as n from bronze.cdc_changes where table_name = 'ledger'`)).toEqual([{ n: 10 }])

    // Restart: the server re-sends from the old position; what the warehouse holds is skipped, the rest lands.
    await db.sourceSql(`insert into ledger select g, g from generate_series(11, 15) g`)
    const resumed = await captureUntil('slot_ledger', 'pub_ledger', 5)
    expect(resumed.changes).toBe(5)
    expect(resumed.skippedTransactions).toBe(1)
    expect(
      await db.warehouseSql(`select count(*)::int as n, count(distinct key->>'id')::int as ids from bronze.cdc_changes where table_name = 'ledger'`),
    ).toEqual([{ n: 15, ids: 15 }])
    const [state] = await db.warehouseSql(`select last_commit_end_lsn::text as lsn from bronze.cdc_state where slot = 'slot_ledger'`)
    expect((await slotStatus(db.source, 'slot_ledger'))?.confirmedFlushLsn).toBe(state?.lsn)
  })
})

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const started = Date.now()
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
