import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import {
  abandonRun,
  commitRun,
  CoordinatorGoneError,
  QueueUnavailableError,
  runPiece,
  ScaleOutFailedError,
  SchemaDriftError,
  startRun,
  type ScaleOutPlan,
} from '../src/index.js'
import { scaleOut } from '../src/bullmq.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'
import { eventually } from './support/processes.js'

// Recovery and concurrency of scale-out runs: a commit run twice, DDL on the source mid-run, a shape changed between
// plan and snapshot, a dead coordinator's run swept or started again, Redis lost mid-run.
const db = useDatabases('scalerecov')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

const stagingSchemas = async () =>
  (await db.warehouseSql(`select nspname from pg_namespace where nspname like 'pgdk\\_run\\_%' order by 1`)).map((row) => row.nspname as string)
const runStatus = async (runId: string) => (await db.warehouseSql(`select status from bronze.scale_out_runs where run_id = $1`, [runId]))[0]?.status

async function runAll(plan: ScaleOutPlan): Promise<void> {
  const options = { source: db.source, warehouse: db.warehouse }
  for (const piece of plan.pieces) await runPiece(plan, piece.id, options)
}

describe('commitRun is idempotent', () => {
  it('two commits at once, and one after, make the rows visible once and all report the committed run', async () => {
    await db.sourceSql(`create table twice (id int primary key, v text)`)
    await db.sourceSql(`insert into twice select g, md5(g::text) from generate_series(1, 30000) g`)
    const runId = `twice-${Date.now()}`
    const run = await startRun(db.source, db.warehouse, { runId, tables: [{ table: 'twice', pieces: 3 }], to: { mode: 'append' }, metadata: false })
    try {
      await runAll(run.plan)
      const results = await Promise.all([commitRun(run.plan, { warehouse: db.warehouse }), commitRun(run.plan, { warehouse: db.warehouse })])
      // A commit job retried after its worker died past COMMIT finds the run committed and changes nothing.
      results.push(await commitRun(run.plan, { warehouse: db.warehouse }))
      for (const result of results) expect(result).toEqual({ runId, rows: 30000, bytes: results[0]?.bytes, targets: ['bronze.br_twice'] })
    } finally {
      await run.close()
    }
    expect(await db.warehouseSql(`select count(*)::int as n, count(distinct id)::int as ids from bronze.br_twice`)).toEqual([{ n: 30000, ids: 30000 }])
    expect(await runStatus(runId)).toBe('committed')
    expect(await stagingSchemas()).toEqual([])
  })
})

describe('the source while a run holds its snapshot', () => {
  it('TRUNCATE and REFRESH MATERIALIZED VIEW wait for the run; a piece queued behind one fails the run instead of hanging', { timeout: 60_000 }, async () => {
    await db.sourceSql(`create table held (id int primary key, v text)`)
    await db.sourceSql(`insert into held select g, 'old' from generate_series(1, 20000) g`)
    await db.sourceSql(`create materialized view held_view as select id, v from held`)
    const run = await startRun(db.source, db.warehouse, {
      tables: [
        { table: 'held', pieces: 2 },
        { table: 'held_view', pieces: 2 },
      ],
    })
    const ddl = await clientFor(db.sourceUrl)
    try {
      await ddl.query(`set lock_timeout = 300`)
      for (const statement of ['truncate held', 'alter table held alter column v type varchar(10)', 'refresh materialized view held_view']) {
        await expect(ddl.query(statement)).rejects.toThrow(/lock timeout/)
      }
      await runPiece(run.plan, 0, { source: db.source, warehouse: db.warehouse })
      // A TRUNCATE queued for the run's end: the next piece's read would wait behind it for ever; it fails instead.
      await ddl.query(`set lock_timeout = 0`)
      const truncated = ddl.query(`begin; truncate held; insert into held select g, 'new' from generate_series(1, 10) g; commit`)
      await eventually(
        async () => (await db.sourceSql(`select count(*)::int as n from pg_locks where not granted and relation = 'held'::regclass`))[0]?.n === 1,
      )
      const error = await runPiece(run.plan, 1, { source: db.source, warehouse: db.warehouse }).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ScaleOutFailedError)
      expect((error as Error).message).toMatch(/cannot read public\.held: a statement that needs it exclusively .* waits for the run to end/)
      await abandonRun(db.warehouse, run.plan, 'failed', (error as Error).message)
      await run.close()
      await truncated
    } finally {
      await run.close()
      await ddl.end()
    }
    expect(await stagingSchemas()).toEqual([])
    expect(await db.sourceSql(`select count(*)::int as n from held`)).toEqual([{ n: 10 }])

    // With nothing queued, a run of the table and its view commits the snapshot's rows, whatever happens after.
    await db.sourceSql(`refresh materialized view held_view`)
    const again = await startRun(db.source, db.warehouse, {
      tables: [
        { table: 'held', pieces: 2 },
        { table: 'held_view', pieces: 2 },
      ],
    })
    try {
      await runAll(again.plan)
      expect(await commitRun(again.plan, { warehouse: db.warehouse })).toMatchObject({ rows: 20 })
    } finally {
      await again.close()
    }
  })

  it('a column changed between the plan and the snapshot fails the run (SchemaDriftError naming it) instead of rounding', { timeout: 60_000 }, async () => {
    await db.sourceSql(`create table prices (id int primary key, price numeric(12,2))`)
    await db.sourceSql(`insert into prices select g, g / 4.0 from generate_series(1, 1000) g`)
    await db.sourceSql(`create table other (id int primary key)`)
    // A migration holds the run's second table while the coordinator plans: the first is planned before it changes.
    const migration = await clientFor(db.sourceUrl)
    try {
      await migration.query('begin')
      await migration.query('alter table other add column w text')
      const starting = startRun(db.source, db.warehouse, { tables: [{ table: 'prices' }, { table: 'other' }] }).catch((caught: unknown) => caught)
      await eventually(
        async () =>
          (await db.sourceSql(`select count(*)::int as n from pg_locks where not granted and relation = 'other'::regclass`).catch(() => [{ n: 0 }]))[0]?.n ===
          1,
      )
      await migration.query(`alter table prices alter column price type numeric(14,4)`)
      await migration.query(`update prices set price = price + 0.0049`)
      await migration.query('commit')
      const error = await starting
      expect(error).toBeInstanceOf(SchemaDriftError)
      expect((error as Error).message).toMatch(
        /public\.prices changed between the run's plan and its snapshot \(column "price": numeric\(12,2\) when planned, numeric\(14,4\) now\)/,
      )
      expect((error as SchemaDriftError).columns).toEqual([{ column: 'price', bronzeType: 'numeric(12,2)', sourceType: 'numeric(14,4)' }])
    } finally {
      await migration.end()
    }
    expect(await stagingSchemas()).toEqual([])
  })
})

describe('a dead coordinator', () => {
  it('its staging area is swept by the next coordinator (plan read back as text), and the run recorded abandoned', async () => {
    await db.sourceSql(`create table swept (id int primary key)`)
    await db.sourceSql(`insert into swept select generate_series(1, 100)`)
    const deadId = `dead-${Date.now()}`
    const dead = await startRun(db.source, db.warehouse, { runId: deadId, tables: [{ table: 'swept' }] })
    await dead.close() // as a SIGKILL: its lock and snapshot go, its staging area and 'running' record stay
    // Another dead run whose stored plan cannot be read: found by its staging schema instead.
    const garbledId = `garbled-${Date.now()}`
    const garbled = await startRun(db.source, db.warehouse, { runId: garbledId, tables: [{ table: 'swept' }] })
    await garbled.close()
    await db.warehouseSql(`update ${garbled.plan.staging}.plan set plan = '"not a plan"'`)
    // Its start swept the first dead run.
    expect(await stagingSchemas()).toEqual([garbled.plan.staging])
    expect(await runStatus(deadId)).toBe('abandoned')
    const next = await startRun(db.source, db.warehouse, { tables: [{ table: 'swept' }] })
    try {
      expect(await stagingSchemas()).toEqual([next.plan.staging])
      expect(await runStatus(garbledId)).toBe('abandoned')
    } finally {
      await abandonRun(db.warehouse, next.plan, 'failed', 'test over')
      await next.close()
    }
  })

  it('its run id starts again: a staging area of its own, which the old run late jobs can neither write into nor abandon', async () => {
    await db.sourceSql(`create table restarted (id int primary key, v text)`)
    await db.sourceSql(`insert into restarted select g, md5(g::text) from generate_series(1, 5000) g`)
    const runId = `restarted-${Date.now()}`
    const options = { source: db.source, warehouse: db.warehouse }
    const dead = await startRun(db.source, db.warehouse, { runId, tables: [{ table: 'restarted', pieces: 2 }] })
    await runPiece(dead.plan, 0, options)
    await dead.close()
    // Its staging area already gone (a worker abandoned it) but the record still says running: taken over as well.
    await db.warehouseSql(`drop schema ${dead.plan.staging} cascade`)
    const run = await startRun(db.source, db.warehouse, { runId, tables: [{ table: 'restarted', pieces: 2 }] })
    try {
      expect(run.plan.staging).not.toBe(dead.plan.staging)
      expect(await stagingSchemas()).toEqual([run.plan.staging])
      expect(await runStatus(runId)).toBe('running')
      // The old run's late jobs: their coordinator is gone; abandoning their run leaves the new one alone.
      await expect(runPiece(dead.plan, 1, options)).rejects.toBeInstanceOf(CoordinatorGoneError)
      await abandonRun(db.warehouse, dead.plan, 'abandoned', 'late job of the dead run')
      await expect(commitRun(dead.plan, { warehouse: db.warehouse })).rejects.toThrow(CoordinatorGoneError)
      expect(await runStatus(runId)).toBe('running')
      await runAll(run.plan)
      expect(await commitRun(run.plan, { warehouse: db.warehouse })).toMatchObject({ rows: 5000 })
    } finally {
      await run.close()
    }
    expect(await runStatus(runId)).toBe('committed')
    expect(await db.warehouseSql(`select count(*)::int as n from bronze.br_restarted`)).toEqual([{ n: 5000 }])
    expect(await stagingSchemas()).toEqual([])
    // Two coordinators of one run id at once: the second is refused.
    const first = await startRun(db.source, db.warehouse, { runId: `${runId}-b`, tables: [{ table: 'restarted' }] })
    try {
      await expect(startRun(db.source, db.warehouse, { runId: `${runId}-b`, tables: [{ table: 'restarted' }] })).rejects.toThrow(
        /already running \(another coordinator holds it\)/,
      )
    } finally {
      await abandonRun(db.warehouse, first.plan, 'failed', 'test over')
      await first.close()
    }
  })
})

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  return typeof address === 'object' && address ? address.port : 0
}

describe('Redis lost mid-run', () => {
  it('fails with QueueUnavailableError within a bounded time, snapshot ended, staging removed, the run recorded failed', { timeout: 60_000 }, async () => {
    await db.sourceSql(`create table lost (id int primary key)`)
    await db.sourceSql(`insert into lost select generate_series(1, 1000)`)
    // A Redis of this test's own: the one the other tests share is never stopped.
    const port = await freePort()
    const redis = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    cleanups.push(() => void redis.kill('SIGKILL'))
    const stopped = new Promise((resolve) => redis.on('exit', resolve))
    const runId = `lost-${Date.now()}`
    await eventually(async () => {
      const probe = spawn('redis-cli', ['-p', String(port), 'ping'], { stdio: 'ignore' })
      return (await new Promise((resolve) => probe.on('exit', resolve))) === 0
    })
    const started = Date.now()
    const error = await scaleOut(db.source, db.warehouse, {
      runId,
      tables: [{ table: 'lost' }],
      queue: { name: 'lost', connection: { host: '127.0.0.1', port } },
      connectTimeoutMs: 1_000,
      onPlanned: () => void redis.kill('SIGKILL'),
    }).catch((caught: unknown) => caught)
    await stopped
    expect(error).toBeInstanceOf(QueueUnavailableError)
    expect((error as Error).message).toMatch(new RegExp(`Redis was lost during run ${runId}`))
    expect(Date.now() - started).toBeLessThan(15_000)
    expect(await runStatus(runId)).toBe('failed')
    expect(await stagingSchemas()).toEqual([])
    expect(
      await db.sourceSql(`select count(*)::int as n from pg_stat_activity where datname = current_database() and state like 'idle in transaction%'`),
    ).toEqual([{ n: 0 }])
  })
})
