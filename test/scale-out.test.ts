import { afterAll, describe, expect, it } from 'vitest'
import { commitRun, connect, CoordinatorGoneError, QueueUnavailableError, runPiece, ScaleOutFailedError, startRun } from '../src/index.js'
import { extractionWorker, scaleOut, type ScaleOutProgress } from '../src/bullmq.js'
import { checksum } from './support/checksum.js'
import { useDatabases } from './support/fixtures.js'
import { watchUnhandled } from './support/unhandled.js'
import { uniqueQueue } from './support/redis.js'

const db = useDatabases('scaleout')
const unhandled = watchUnhandled().reasons
const queues: ReturnType<typeof uniqueQueue>[] = []
afterAll(async () => {
  for (const queue of queues) await queue.remove().catch(() => undefined)
})

async function stagingSchemas(): Promise<string[]> {
  const rows = await db.warehouseSql(`select nspname from pg_namespace where nspname like 'pgdk\\_run\\_%' order by 1`)
  return rows.map((row) => row.nspname as string)
}

describe('runPiece, without a job engine', () => {
  it('runs a plan piece by piece; a piece run again, or twice at once, is written once', async () => {
    await db.sourceSql(`create table events (id bigint primary key, kind text, payload jsonb, at timestamptz)`)
    await db.sourceSql(
      `insert into events select g, 'k' || (g % 7), jsonb_build_object('g', g), '2026-01-01'::timestamptz + g * interval '1 second' from generate_series(1, 20000) g`,
    )
    const run = await startRun(db.source, db.warehouse, { tables: [{ table: 'events', pieces: 4 }] })
    const { plan } = run
    try {
      expect(JSON.parse(JSON.stringify(plan))).toEqual(plan)
      expect(plan.pieces.length).toBe(4)
      // A change after the snapshot is not part of the run.
      await db.sourceSql(`update events set kind = 'late' where id <= 100`)
      const options = { source: db.source, warehouse: db.warehouse }
      const twice = await Promise.all([runPiece(plan, 0, options), runPiece(plan, 0, options)])
      expect(twice.map((result) => result.alreadyDone).sort()).toEqual([false, true])
      expect(twice[0].rows).toBe(twice[1].rows)
      for (const piece of plan.pieces.slice(1)) await runPiece(plan, piece.id, options)
      const again = await runPiece(plan, 2, options)
      expect(again.alreadyDone).toBe(true)
      const report = await commitRun(plan, { warehouse: db.warehouse })
      expect(report).toMatchObject({ rows: 20000, targets: ['bronze.br_events'] })
    } finally {
      await run.close()
    }
    const columns = ['id', 'kind', 'payload', 'at']
    const got = await checksum(db.warehouseDatabase, 'bronze.br_events', columns)
    await db.sourceSql(`update events set kind = 'k' || (id % 7) where id <= 100`)
    expect(got).toEqual(await checksum(db.sourceDatabase, 'events', columns))
    const [meta] = await db.warehouseSql(`select count(distinct _bronze_loaded_at)::int as stamps, min(_bronze_extraction_type) as type from bronze.br_events`)
    expect(meta).toEqual({ stamps: 1, type: 'full' })
    const [record] = await db.warehouseSql(`select status, rows::int, pieces from bronze.scale_out_runs where run_id = $1`, [plan.runId])
    expect(record).toEqual({ status: 'committed', rows: 20000, pieces: 4 })
    expect(await stagingSchemas()).toEqual([])
  })

  it('refuses to commit a run with a piece missing, or whose coordinator is gone: nothing visible, staging removed', async () => {
    await db.sourceSql(`create table small (id int primary key, v text)`)
    await db.sourceSql(`insert into small select g, md5(g::text) from generate_series(1, 3000) g`)
    const options = { source: db.source, warehouse: db.warehouse }
    const run = await startRun(db.source, db.warehouse, { tables: [{ table: 'small', pieces: 3 }] })
    try {
      await runPiece(run.plan, 0, options)
      await expect(commitRun(run.plan, { warehouse: db.warehouse })).rejects.toBeInstanceOf(ScaleOutFailedError)
      // The run is over (its staging area dropped) though its coordinator lives: a late piece fails, writing nothing.
      await expect(runPiece(run.plan, 1, options)).rejects.toThrow(/staging area of run .* is gone/)
    } finally {
      await run.close()
    }
    expect(await stagingSchemas()).toEqual([])
    expect(await db.warehouseSql(`select to_regclass('bronze.br_small') as t`)).toEqual([{ t: null }])

    const gone = await startRun(db.source, db.warehouse, { tables: [{ table: 'small', pieces: 3 }] })
    await runPiece(gone.plan, 0, options)
    await gone.close() // the coordinator ends: snapshot and lock are gone
    await expect(runPiece(gone.plan, 1, options)).rejects.toBeInstanceOf(CoordinatorGoneError)
    await expect(commitRun(gone.plan, { warehouse: db.warehouse })).rejects.toBeInstanceOf(CoordinatorGoneError)
    expect(await stagingSchemas()).toEqual([])
    expect(await db.warehouseSql(`select to_regclass('bronze.br_small') as t`)).toEqual([{ t: null }])
    const statuses = await db.warehouseSql(`select status from bronze.scale_out_runs where run_id in ($1, $2) order by status`, [
      run.plan.runId,
      gone.plan.runId,
    ])
    expect(statuses.map((row) => row.status)).toEqual(['abandoned', 'failed'])
  })
})

describe('scaleOut on BullMQ', () => {
  it('extracts many tables in one flow, reporting progress across workers; merge and append commit from staging', async () => {
    await db.sourceSql(`create table customers (id int primary key, name text)`)
    await db.sourceSql(`insert into customers select g, 'c' || g from generate_series(1, 5000) g`)
    await db.sourceSql(`create table readings (id bigint, at date not null, v numeric) partition by range (at)`)
    await db.sourceSql(`create table readings_1 partition of readings for values from ('2026-01-01') to ('2026-02-01')`)
    await db.sourceSql(`create table readings_2 partition of readings for values from ('2026-02-01') to ('2026-03-01')`)
    await db.sourceSql(`create table readings_d partition of readings default`)
    await db.sourceSql(`insert into readings select g, '2025-12-20'::date + (g % 80), g / 3.0 from generate_series(1, 9000) g`)
    await db.sourceSql(`create table notes (id int primary key, body text)`)
    await db.sourceSql(`insert into notes select g, repeat('x', g % 50) from generate_series(1, 2000) g`)
    const queue = uniqueQueue('many')
    queues.push(queue)
    const worker = extractionWorker(db.source, db.warehouse, { queue: queue.options, concurrency: 2, progressIntervalMs: 10 })
    const seen: ScaleOutProgress[] = []
    try {
      const report = await scaleOut(db.source, db.warehouse, {
        tables: [{ table: 'customers', pieces: 3 }, { table: 'readings' }, { table: 'notes', pieces: 2 }],
        queue: queue.options,
        onProgress: (progress) => seen.push(progress),
      })
      expect(report.targets).toEqual(['bronze.br_customers', 'bronze.br_readings', 'bronze.br_notes'])
      expect(report.pieces).toBe(3 + 3 + 2)
      expect(report.rows).toBe(16000)
      for (const [table, columns] of [
        ['customers', ['id', 'name']],
        ['readings', ['id', 'at', 'v']],
        ['notes', ['id', 'body']],
      ] as const) {
        expect(await checksum(db.warehouseDatabase, `bronze.br_${table}`, [...columns])).toEqual(await checksum(db.sourceDatabase, table, [...columns]))
      }
      const partitions = await db.warehouseSql(`select _bronze_partition as p, count(*)::int as n from bronze.br_readings group by 1 order by 1`)
      const truth = await db.sourceSql(`select 'public.' || tableoid::regclass::text as p, count(*)::int as n from readings group by 1 order by 1`)
      expect(partitions).toEqual(truth)
      expect(seen.at(-1)).toMatchObject({ pieces: 8, piecesDone: 8, rows: 16000, bytes: report.bytes })
      expect(report.bytes).toBeGreaterThan(16000)
      expect(seen.some((progress) => progress.piecesDone > 0 && progress.piecesDone < 8)).toBe(true)

      // merge: changed and new keys upserted; append: rows added; both from staging in the commit's transaction.
      await db.sourceSql(`update customers set name = 'renamed' where id % 10 = 0`)
      await db.sourceSql(`insert into customers select g, 'c' || g from generate_series(5001, 5500) g`)
      // A replaced table has no key; merge asks for one (as postgresSink does), and fails with nothing visible without it.
      await expect(
        scaleOut(db.source, db.warehouse, { tables: [{ table: 'customers', pieces: 2 }], to: { mode: 'merge' }, queue: queue.options }),
      ).rejects.toThrow(/needs a unique index on \(id\)/)
      expect(await stagingSchemas()).toEqual([])
      await db.warehouseSql(`create unique index on bronze.br_customers (id)`)
      await scaleOut(db.source, db.warehouse, { tables: [{ table: 'customers', pieces: 2 }], to: { mode: 'merge' }, queue: queue.options })
      expect(await checksum(db.warehouseDatabase, 'bronze.br_customers', ['id', 'name'])).toEqual(
        await checksum(db.sourceDatabase, 'customers', ['id', 'name']),
      )
      await scaleOut(db.source, db.warehouse, { tables: [{ table: 'notes', pieces: 2 }], to: { mode: 'append' }, queue: queue.options })
      expect(await db.warehouseSql(`select count(*)::int as n, count(distinct id)::int as ids from bronze.br_notes`)).toEqual([{ n: 4000, ids: 2000 }])
      expect(await stagingSchemas()).toEqual([])
    } finally {
      await worker.close()
    }
  })

  it('a piece that fails for good (its attempts spent) leaves nothing visible and no staging; the same run id then starts again', async () => {
    await db.sourceSql(`create table doomed (id int, v text)`)
    await db.sourceSql(`insert into doomed select g, md5(g::text) from generate_series(1, 200000) g`)
    const queue = uniqueQueue('doomed')
    queues.push(queue)
    // This worker's source sessions time out on any real statement: its pieces fail on every attempt.
    const slowSource = connect({ url: db.sourceUrl, settings: { statement_timeout: 1 } })
    const worker = extractionWorker(slowSource, db.warehouse, { queue: queue.options })
    const runId = `doomed-${Date.now()}`
    try {
      const error = await scaleOut(db.source, db.warehouse, {
        runId,
        tables: [{ table: 'doomed', pieces: 2 }],
        queue: queue.options,
        attempts: 2,
        backoffMs: 10,
      }).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ScaleOutFailedError)
      expect((error as Error).message).toMatch(/pieces failed for good .*statement timeout/)
    } finally {
      await worker.close()
      await slowSource.close()
    }
    expect(await stagingSchemas()).toEqual([])
    expect(await db.warehouseSql(`select to_regclass('bronze.br_doomed') as t`)).toEqual([{ t: null }])
    expect(await db.warehouseSql(`select status from bronze.scale_out_runs where run_id = $1`, [runId])).toEqual([{ status: 'failed' }])

    const healthy = extractionWorker(db.source, db.warehouse, { queue: queue.options })
    try {
      const report = await scaleOut(db.source, db.warehouse, { runId, tables: [{ table: 'doomed', pieces: 2 }], queue: queue.options })
      expect(report.rows).toBe(200000)
    } finally {
      await healthy.close()
    }
    expect(await db.warehouseSql(`select status from bronze.scale_out_runs where run_id = $1`, [runId])).toEqual([{ status: 'committed' }])
    // A committed run id is not run twice.
    await expect(scaleOut(db.source, db.warehouse, { runId, tables: [{ table: 'doomed' }], queue: queue.options })).rejects.toThrow(
      /already running or committed/,
    )
    expect(await stagingSchemas()).toEqual([])
  })

  it("a caller's onProgress or onPlanned that throws or rejects fails the run, nothing visible, nothing unhandled", async () => {
    await db.sourceSql(`create table watched (id int primary key, v text)`)
    await db.sourceSql(`insert into watched select g, md5(g::text) from generate_series(1, 20000) g`)
    const queue = uniqueQueue('callbacks')
    queues.push(queue)
    const worker = extractionWorker(db.source, db.warehouse, { queue: queue.options, progressIntervalMs: 10 })
    try {
      const failing = {
        'onProgress throws': {
          onProgress: () => {
            throw new Error('dashboard down')
          },
        },
        'onProgress rejects': { onProgress: () => Promise.reject(new Error('dashboard down')) },
        'onPlanned rejects': { onPlanned: () => Promise.reject(new Error('dashboard down')) },
      }
      for (const [name, callbacks] of Object.entries(failing)) {
        const error = await scaleOut(db.source, db.warehouse, { tables: [{ table: 'watched', pieces: 4 }], queue: queue.options, ...callbacks }).catch(
          (caught: unknown) => caught,
        )
        expect(error, name).toBeInstanceOf(Error)
        expect(String((error as Error).message) + String((error as Error).cause), name).toMatch(/dashboard down/)
        expect(await db.warehouseSql(`select to_regclass('bronze.br_watched') as t`), name).toEqual([{ t: null }])
      }
      // A run with a callback that works still commits.
      let calls = 0
      const report = await scaleOut(db.source, db.warehouse, {
        tables: [{ table: 'watched', pieces: 4 }],
        queue: queue.options,
        onProgress: async () => {
          calls++
          await Promise.resolve()
        },
      })
      expect(report.rows).toBe(20000)
      expect(calls).toBeGreaterThan(0)
    } finally {
      await worker.close()
    }
    // Pieces still queued or running when the run failed find their staging area gone; give them a moment to settle.
    for (const until = Date.now() + 10_000; Date.now() < until && (await stagingSchemas()).length > 0;) await new Promise((resolve) => setTimeout(resolve, 100))
    expect(await stagingSchemas()).toEqual([])
    expect(unhandled).toEqual([])
  })

  it('fails with QueueUnavailableError when Redis cannot be reached, having written nothing', async () => {
    await db.sourceSql(`create table lonely (id int)`)
    const before = await db.warehouseSql(`select count(*)::int as n from pg_namespace`)
    const error = await scaleOut(db.source, db.warehouse, {
      tables: [{ table: 'lonely' }],
      to: { schema: 'never' },
      queue: { name: 'unreachable', connection: { host: '127.0.0.1', port: 1, password: 'hunter2' } },
      connectTimeoutMs: 1_000,
    }).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(QueueUnavailableError)
    expect((error as Error).message).toMatch(/Redis at 127\.0\.0\.1:1 cannot be reached/)
    expect((error as Error).message).not.toContain('hunter2')
    expect(await db.warehouseSql(`select count(*)::int as n from pg_namespace`)).toEqual(before)
    expect(await db.warehouseSql(`select to_regclass('never.scale_out_runs') as t`)).toEqual([{ t: null }])
  })
})
