import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AbortedError,
  CheckpointConflictError,
  CheckpointWriteError,
  ConfigError,
  ConnectionError,
  ConnectionLostError,
  SchemaDriftError,
  SinkWriteError,
  SourceQueryError,
  TransformError,
  UnknownTableError,
} from '../src/index.js'
import { EXIT, exitCodeOf } from '../src/cli/exit-codes.js'
import { clock, renderProgress } from '../src/cli/output.js'
import { eventsOf, runCli } from './support/cli.js'
import { adminQuery, tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('cli')
const env = () => ({ SOURCE_DATABASE_URL: db.sourceUrl, WAREHOUSE_DATABASE_URL: db.warehouseUrl })
let scratch: string

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'pgdk-cli-'))
  await db.sourceSql(`create table orders (id bigint primary key, customer text, total numeric(12,2), updated_at timestamptz not null)`)
  await db.sourceSql(
    `insert into orders select g, 'customer ' || g % 50, g * 1.25, timestamptz '2026-01-01' + g * interval '1 minute' from generate_series(1, 5000) g`,
  )
  await db.sourceSql(`analyze orders`)
})

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true })
})

describe('pg-datakit extract', () => {
  it('copies a table into bronze and prints one JSON line per event, the last progress event final, then the report', async () => {
    const run = await runCli(['extract', '--table', 'orders', '--mode', 'replace'], env())
    expect(run.stderr).toBe('')
    expect(run.code).toBe(EXIT.ok)
    expect(run.events[0]).toMatchObject({ event: 'start', mode: 'replace', source: 'copy public.orders' })
    const progress = eventsOf(run, 'progress')
    expect(progress.length).toBeGreaterThan(0)
    expect(progress.at(-1)).toMatchObject({ final: true, rows: 5000, totalRows: 5000, percent: 100 })
    expect(progress.slice(0, -1).every((event) => event.final === false)).toBe(true)
    const report = run.events.at(-1)!
    expect(report).toMatchObject({ event: 'report', rows: 5000, target: 'bronze.br_orders', path: 'copy-bytes' })
    expect(report.steps).toContainEqual(expect.objectContaining({ step: 'sink', name: 'postgres bronze.br_orders (replace)' }))
    const equal = await tablesEqual(db.sourceUrl, 'orders', db.warehouseUrl, 'bronze.br_orders', ['id', 'customer', 'total', 'updated_at'])
    expect(equal).toMatchObject({ missing: 0, extra: 0, sourceRows: 5000, targetRows: 5000 })
  })

  it('takes --from and --to over the environment, and --columns, --target-table and --copy-format', async () => {
    const run = await runCli(
      [
        'extract',
        '--from',
        db.sourceUrl,
        '--to',
        db.warehouseUrl,
        '--table',
        'orders',
        '--columns',
        'id,total',
        '--target-table',
        'orders_narrow',
        '--copy-format',
        'text',
      ],
      {},
    )
    expect(run.code).toBe(EXIT.ok)
    expect(run.events.at(-1)).toMatchObject({ event: 'report', rows: 5000, target: 'bronze.orders_narrow', copyFormat: 'text' })
    const columns = await db.warehouseSql(
      `select column_name from information_schema.columns where table_schema = 'bronze' and table_name = 'orders_narrow' and column_name not like '\\_bronze%' order by ordinal_position`,
    )
    expect(columns.map((row) => row.column_name)).toEqual(['id', 'total'])
  })

  it('exits 2 on a bad option, a missing one, and a missing URL, naming the problem', async () => {
    const bad = await runCli(['extract', '--table', 'orders', '--mode', 'upsert'], env())
    expect(bad.code).toBe(EXIT.usage)
    expect(bad.stderr).toContain("argument 'upsert' is invalid")
    expect(bad.events.at(-1)).toMatchObject({ event: 'error', exitCode: 2, code: 'USAGE' })
    const missing = await runCli(['extract', '--mode', 'replace'], env())
    expect(missing.code).toBe(EXIT.usage)
    expect(missing.stderr).toContain("required option '--table <name>' not specified")
    const noUrl = await runCli(['extract', '--table', 'orders'], { WAREHOUSE_DATABASE_URL: db.warehouseUrl })
    expect(noUrl.code).toBe(EXIT.usage)
    expect(noUrl.events.at(-1)).toMatchObject({ event: 'error', code: 'CONFIG_INVALID', name: 'ConfigError' })
    expect(String(noUrl.events.at(-1)?.message)).toContain('SOURCE_DATABASE_URL is not set')
    const unknownCommand = await runCli(['exract'], env())
    expect(unknownCommand.code).toBe(EXIT.usage)
  })

  it('exits 4 for an unknown table, with the error as the last JSON line', async () => {
    const run = await runCli(['extract', '--table', 'no_such_table'], env())
    expect(run.code).toBe(EXIT.source)
    expect(run.events.at(-1)).toMatchObject({ event: 'error', exitCode: 4, name: 'UnknownTableError', code: 'UNKNOWN_TABLE', step: 'source' })
    expect(eventsOf(run, 'report')).toHaveLength(0)
  })

  it('exits 3 when the server refuses the connection, and never prints the password', async () => {
    const password = `pw${randomBytes(6).toString('hex')}`
    const refused = `postgresql://someone:${password}@127.0.0.1:1/nowhere`
    const run = await runCli(['extract', '--table', 'orders', '--from', refused, '--retries', '0'], env())
    expect(run.code).toBe(EXIT.connection)
    expect(run.events.at(-1)).toMatchObject({ event: 'error', exitCode: 3, code: 'CONNECTION_FAILED' })
    expect(run.stdout + run.stderr).not.toContain(password)
    expect(run.stdout).toContain('postgresql://someone@127.0.0.1:1/nowhere')
  })
})

describe('pg-datakit extract, failing', () => {
  it('exits 5 when the warehouse table cannot take the rows (schema drift), having written nothing', async () => {
    await db.warehouseSql(`create schema if not exists bronze`)
    await db.warehouseSql(`create table bronze.orders_drift (id text, customer int, total numeric, updated_at timestamptz)`)
    const run = await runCli(['extract', '--table', 'orders', '--target-table', 'orders_drift', '--mode', 'append'], env())
    expect(run.code).toBe(EXIT.sink)
    expect(run.events.at(-1)).toMatchObject({ event: 'error', exitCode: 5, name: 'SchemaDriftError', code: 'SCHEMA_DRIFT', step: 'sink' })
    expect(await db.warehouseSql(`select 1 from bronze.orders_drift`)).toHaveLength(0)
  })

  it('exits 130 when interrupted, and the replace it was doing never shows', async () => {
    await db.sourceSql(`create table big as select g as id, repeat('x', 200) as pad from generate_series(1, 400000) g`)
    let interrupted = false
    const run = await runCli(['extract', '--table', 'big', '--mode', 'replace', '--copy-format', 'text'], env(), {
      onStdout: (stdout, child) => {
        if (!interrupted && stdout.includes('"event":"progress"')) {
          interrupted = true
          child.kill('SIGINT')
        }
      },
    })
    expect(interrupted).toBe(true)
    expect(run.code).toBe(EXIT.interrupted)
    expect(run.events.at(-1)).toMatchObject({ event: 'error', exitCode: 130, code: 'ABORTED' })
    expect(await db.warehouseSql(`select to_regclass('bronze.br_big') as found`)).toEqual([{ found: null }])
  })

  it('runs a plain table in pieces with --concurrency, all rows once', async () => {
    const run = await runCli(['extract', '--table', 'orders', '--concurrency', '3', '--target-table', 'orders_parallel'], env())
    expect(run.code).toBe(EXIT.ok)
    expect(run.events.at(-1)).toMatchObject({ event: 'report', rows: 5000, source: 'parallel public.orders (3 connections)' })
    const equal = await tablesEqual(db.sourceUrl, 'orders', db.warehouseUrl, 'bronze.orders_parallel', ['id', 'customer', 'total', 'updated_at'])
    expect(equal).toMatchObject({ missing: 0, extra: 0 })
  })
})

describe('pg-datakit checkpoints', () => {
  it('lists the checkpoint of an incremental run and resets it only with --yes, so the next run reads everything again', async () => {
    const args = ['extract', '--table', 'orders', '--incremental', 'updated_at', '--target-table', 'orders_inc']
    const first = await runCli(args, env())
    expect(first.code).toBe(EXIT.ok)
    expect(first.events.at(-1)).toMatchObject({ event: 'report', rows: 5000, target: 'bronze.orders_inc' })
    await db.sourceSql(`update orders set total = total + 1, updated_at = updated_at + interval '1 year' where id <= 10`)
    const second = await runCli(args, env())
    expect(second.events.at(-1)).toMatchObject({ event: 'report', rows: 10 })

    const list = await runCli(['checkpoints', 'list'], env())
    expect(list.code).toBe(EXIT.ok)
    const [{ checkpoints }] = eventsOf(list, 'checkpoints') as [
      { checkpoints: { key: { table: string; pipeline: string }; checkpoint: { cursorColumn: string; value: string; rows: number } }[] },
    ]
    expect(checkpoints).toHaveLength(1)
    const [maxCursor] = (await db.sourceSql(`select max(updated_at)::text as value from orders`)) as [{ value: string }]
    expect(checkpoints[0]).toMatchObject({ key: { table: 'orders' }, checkpoint: { cursorColumn: 'updated_at', value: maxCursor.value, rows: 10 } })
    expect(eventsOf(await runCli(['checkpoints', 'list', '--table', 'other'], env()), 'checkpoints')[0]).toMatchObject({ checkpoints: [] })

    const refused = await runCli(['checkpoints', 'reset', '--table', 'orders'], env())
    expect(refused.code).toBe(EXIT.usage)
    expect(String(refused.events.at(-1)?.message)).toContain('would delete 1 checkpoint(s) of public.orders')
    expect(await db.warehouseSql(`select 1 from bronze.extraction_checkpoints`)).toHaveLength(1)

    const reset = await runCli(['checkpoints', 'reset', '--table', 'orders', '--pipeline', checkpoints[0]!.key.pipeline, '--yes'], env())
    expect(reset.code).toBe(EXIT.ok)
    expect(reset.events.at(-1)).toMatchObject({ event: 'reset', removed: 1 })
    expect(await db.warehouseSql(`select 1 from bronze.extraction_checkpoints`)).toHaveLength(0)

    const again = await runCli(args, env())
    expect(again.events.at(-1)).toMatchObject({ event: 'report', rows: 5000 })
  })
})

describe('pg-datakit slots', () => {
  const slot = `cli_test_${randomBytes(4).toString('hex')}`

  afterAll(async () => {
    await adminQuery(`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1`, [slot])
  })

  it('shows a slot, refuses to drop it without --yes, and drops it with --yes', async () => {
    await adminQuery(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [slot], db.sourceDatabase)
    const one = await runCli(['slots', 'status', slot], env())
    expect(one.code).toBe(EXIT.ok)
    expect(one.events.at(-1)).toMatchObject({ event: 'slots', slots: [{ name: slot, plugin: 'pgoutput', database: db.sourceDatabase, active: false }] })
    const all = await runCli(['slots', 'status'], env())
    expect((all.events.at(-1)?.slots as { name: string }[]).map((status) => status.name)).toContain(slot)

    const refused = await runCli(['slots', 'drop', slot], env())
    expect(refused.code).toBe(EXIT.usage)
    expect(String(refused.events.at(-1)?.message)).toContain(`would drop replication slot "${slot}"`)
    expect((await adminQuery(`select 1 from pg_replication_slots where slot_name = $1`, [slot])).rowCount).toBe(1)

    const dropped = await runCli(['slots', 'drop', slot, '--yes'], env())
    expect(dropped.code).toBe(EXIT.ok)
    expect(dropped.events.at(-1)).toMatchObject({ event: 'dropped', slot, dropped: true })
    expect((await adminQuery(`select 1 from pg_replication_slots where slot_name = $1`, [slot])).rowCount).toBe(0)

    const gone = await runCli(['slots', 'status', slot], env())
    expect(gone.code).toBe(EXIT.usage)
    expect(String(gone.events.at(-1)?.message)).toContain(`no replication slot "${slot}"`)
  })
})

describe('pg-datakit plan', () => {
  it('prints the plan of a partitioned table, which extract --plan then reads', async () => {
    await db.sourceSql(`create table events (id bigint, at date not null, payload text) partition by range (at)`)
    await db.sourceSql(`create table events_jan partition of events for values from ('2026-01-01') to ('2026-02-01')`)
    await db.sourceSql(`create table events_feb partition of events for values from ('2026-02-01') to ('2026-03-01')`)
    await db.sourceSql(`insert into events select g, date '2026-01-01' + (g % 59), 'p' || g from generate_series(1, 3000) g`)
    const run = await runCli(['plan', '--table', 'events', '--concurrency', '2'], env())
    expect(run.code).toBe(EXIT.ok)
    const plan = run.events.at(-1)?.plan as { kind: string; pieces: { partition: string }[] }
    expect(plan.kind).toBe('partitioned')
    expect(plan.pieces.map((piece) => piece.partition).sort()).toEqual(['public.events_feb', 'public.events_jan'])

    const file = join(scratch, 'plan.json')
    await writeFile(file, run.stdout)
    const extracted = await runCli(['extract', '--table', 'events', '--plan', file, '--concurrency', '2'], env())
    expect(extracted.code).toBe(EXIT.ok)
    expect(extracted.events.at(-1)).toMatchObject({ event: 'report', rows: 3000, target: 'bronze.br_events' })
    const [{ n }] = (await db.warehouseSql(`select count(distinct _bronze_partition)::int as n from bronze.br_events`)) as [{ n: number }]
    expect(n).toBe(2)
  })

  it('plans a plain table in page ranges, and exits 4 for a table that does not exist', async () => {
    const run = await runCli(['plan', '--table', 'orders', '--pieces', '3'], env())
    expect(run.code).toBe(EXIT.ok)
    expect(run.events.at(-1)).toMatchObject({ event: 'plan', plan: { kind: 'table', table: 'orders', version: 1 } })
    expect((run.events.at(-1)?.plan as { pieces: unknown[] }).pieces).toHaveLength(3)
    const missing = await runCli(['plan', '--table', 'no_such_table'], env())
    expect(missing.code).toBe(EXIT.source)
    expect(missing.events.at(-1)).toMatchObject({ code: 'UNKNOWN_TABLE' })
  })
})

describe('the CLI without a database', () => {
  it('prints help and its version with exit 0', async () => {
    const help = await runCli(['--help'])
    expect(help.code).toBe(EXIT.ok)
    for (const command of ['extract', 'checkpoints', 'slots', 'plan']) expect(help.stdout).toContain(command)
    const version = await runCli(['--version'])
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/)
  })

  it('maps each error class to its exit code', () => {
    expect(exitCodeOf(new ConfigError('x', 'bad'))).toBe(2)
    expect(exitCodeOf(new ConnectionError('refused', { step: 'connect' }))).toBe(3)
    expect(exitCodeOf(new ConnectionLostError('lost', { step: 'sink' }))).toBe(3)
    expect(exitCodeOf(new UnknownTableError('nope', { step: 'source' }))).toBe(4)
    expect(exitCodeOf(new SourceQueryError('failed', { step: 'source' }))).toBe(4)
    expect(exitCodeOf(new SinkWriteError('failed', { step: 'sink' }))).toBe(5)
    expect(exitCodeOf(new SchemaDriftError('drift', []))).toBe(5)
    expect(exitCodeOf(new CheckpointConflictError('moved', { step: 'sink' }))).toBe(6)
    expect(exitCodeOf(new CheckpointWriteError('not written', { step: 'sink' }))).toBe(7)
    expect(exitCodeOf(new TransformError('threw', { step: 'transform' }))).toBe(8)
    expect(exitCodeOf(new AbortedError('stopped', { step: 'pipeline' }))).toBe(130)
    expect(exitCodeOf(new TypeError('a bug'))).toBe(1)
  })

  it('renders a progress line with a bar, percent, rate and ETA, and without a bar when there is no total', () => {
    const base = { runId: 'r', rows: 42_000, bytes: 10_000_000, elapsedMs: 2_000, rowsPerSecond: 21_000, step: 'sink', final: false }
    const line = renderProgress({ ...base, totalRows: 100_000, percent: 42, etaSeconds: 3 }, 120)
    expect(line).toBe('[########------------]  42.0%  42,000 / 100,000 rows  21,000 rows/s  5.0 MB/s  ETA 0:03')
    expect(renderProgress(base, 120)).toBe('42,000 rows  21,000 rows/s  5.0 MB/s  0:02 elapsed')
    expect(renderProgress({ ...base, totalRows: 100_000, percent: 42, etaSeconds: 3 }, 40)).toHaveLength(39)
    expect(clock(3725)).toBe('1:02:05')
  })
})
