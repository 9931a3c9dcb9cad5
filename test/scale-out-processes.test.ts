import { fileURLToPath } from 'node:url'
import { Queue } from 'bullmq'
import { afterAll, expect, it } from 'vitest'
import { extractionWorker, pieceJobId, scaleOut } from '../src/bullmq.js'
import type { ScaleOutPlan } from '../src/index.js'
import { checksum } from './support/checksum.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'
import { eventually, startChild, type Child } from './support/processes.js'
import { REDIS, uniqueQueue } from './support/redis.js'

const db = useDatabases('scaleproc')
const WORKER = fileURLToPath(new URL('./support/scale-out-worker.ts', import.meta.url))
const COORDINATOR = fileURLToPath(new URL('./support/scale-out-coordinator.ts', import.meta.url))
const COLUMNS = ['id', 'a', 'b', 'c', 'd']
const children: Child[] = []
const queues: ReturnType<typeof uniqueQueue>[] = []

afterAll(async () => {
  for (const child of children) if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL')
  for (const queue of queues) await queue.remove().catch(() => undefined)
})

function startWorker(queue: ReturnType<typeof uniqueQueue>, env: Record<string, string> = {}): Child {
  const child = startChild(WORKER, [db.sourceUrl, db.warehouseUrl, queue.name, queue.prefix], env)
  children.push(child)
  return child
}

async function createTable(name: string, rows: number): Promise<void> {
  await db.sourceSql(`create table ${name} (id bigint primary key, a int, b text, c numeric(12,2), d timestamptz)`)
  await db.sourceSql(
    `insert into ${name} select g, g % 1000, md5(g::text), g / 7.0, '2026-01-01'::timestamptz + g * interval '1 second' from generate_series(1, $1::int) g`,
    [rows],
  )
  await db.sourceSql(`analyze ${name}`)
}

/** The table's checksum as of the run's snapshot, read in it (the coordinator holds it while the run goes on). */
async function checksumInSnapshot(plan: ScaleOutPlan, table: string): Promise<{ rows: number; sum: string }> {
  const client = await clientFor(db.sourceUrl)
  try {
    await client.query('begin isolation level repeatable read read only')
    await client.query(`set transaction snapshot '${plan.snapshot}'`)
    const row = `row(${COLUMNS.map((column) => `"${column}"`).join(', ')})::text`
    const { rows } = await client.query(`select count(*)::int as rows, coalesce(sum(hashtextextended(${row}, 0)::numeric), 0)::text as sum from ${table}`)
    await client.query('commit')
    return rows[0] as { rows: number; sum: string }
  } finally {
    await client.end()
  }
}

const stagingLeft = async () => (await db.warehouseSql(`select count(*)::int as n from pg_namespace where nspname like 'pgdk\\_run\\_%'`))[0]?.n as number

it('3 worker processes extract a 1 M-row table while a writer changes it: the result is the snapshot, by checksum', { timeout: 600_000 }, async () => {
  await createTable('big', 1_000_000)
  const queue = uniqueQueue('big')
  queues.push(queue)
  const workers = [startWorker(queue), startWorker(queue), startWorker(queue)]
  await Promise.all(workers.map((worker) => worker.waitFor(/^ready$/)))

  // The writer updates, inserts and deletes all through the run, in small transactions.
  let writing = true
  let writes = 0
  const writer = (async () => {
    const client = await clientFor(db.sourceUrl)
    try {
      for (let round = 0; writing; round++) {
        const at = 1 + ((round * 7919) % 990_000)
        await client.query(`update big set a = a + 1, b = 'changed' where id between $1 and $1 + 200`, [at])
        await client.query(`insert into big select g, 0, 'new', 0, now() from generate_series($1::bigint, $1::bigint + 49) g`, [2_000_000 + round * 50])
        await client.query(`delete from big where id between $1 and $1 + 20`, [at + 500])
        writes++
      }
    } finally {
      await client.end()
    }
  })()

  let inSnapshot: Promise<{ rows: number; sum: string }> | undefined
  const report = await scaleOut(db.source, db.warehouse, {
    tables: [{ table: 'big', pieces: 12 }],
    queue: queue.options,
    onPlanned: (plan) => {
      inSnapshot = checksumInSnapshot(plan, 'big')
    },
  }).finally(() => (writing = false))
  await writer
  expect(writes).toBeGreaterThan(3)
  const expected = await inSnapshot!
  expect(report.rows).toBe(expected.rows)
  expect(await checksum(db.warehouseDatabase, 'bronze.br_big', COLUMNS)).toEqual(expected)
  // The source moved on during the run: a result equal to the table now would be wrong.
  expect(await checksum(db.sourceDatabase, 'big', COLUMNS)).not.toEqual(expected)
  // Every worker process took pieces.
  for (const worker of workers) expect(worker.lines.some((line) => /^completed \d+$/.test(line))).toBe(true)
  expect(await stagingLeft()).toBe(0)
  for (const worker of workers) worker.process.kill('SIGTERM')
  await Promise.all(workers.map((worker) => worker.exited))
})

it('a worker SIGKILLed mid-piece (3 times, 3 pieces): each piece is run again and the result is exact, no duplicates', { timeout: 300_000 }, async () => {
  await createTable('killed', 240_000)
  const queue = uniqueQueue('kill')
  queues.push(queue)
  const killed: number[] = []
  const watch = (worker: Child) => {
    worker.onLine((line) => {
      const match = line.match(/^progress (\d+) (\d+)$/)
      if (!match || killed.length >= 3 || Number(match[2]) === 0) return
      const piece = Number(match[1])
      if (killed.includes(piece) || worker.process.killed) return
      // Rows of this piece are being copied and not committed: kill the worker now, and start another.
      killed.push(piece)
      worker.process.kill('SIGKILL')
      const next = startWorker(queue, { PROGRESS_MS: '20' })
      watch(next)
    })
  }
  const first = [startWorker(queue, { PROGRESS_MS: '20' }), startWorker(queue, { PROGRESS_MS: '20' })]
  first.forEach(watch)
  await Promise.all(first.map((worker) => worker.waitFor(/^ready$/)))
  let plan: ScaleOutPlan | undefined
  const report = await scaleOut(db.source, db.warehouse, {
    tables: [{ table: 'killed', pieces: 8 }],
    queue: queue.options,
    onPlanned: (planned) => (plan = planned),
  })
  expect(killed.length).toBe(3)
  expect(report.rows).toBe(240_000)
  expect(await checksum(db.warehouseDatabase, 'bronze.br_killed', COLUMNS)).toEqual(await checksum(db.sourceDatabase, 'killed', COLUMNS))
  expect(await db.warehouseSql(`select count(*)::int as n, count(distinct id)::int as ids from bronze.br_killed`)).toEqual([{ n: 240_000, ids: 240_000 }])
  // Each killed piece was handed out again as a stalled job, and its second attempt wrote it (the first rolled back).
  const jobs = new Queue(queue.name, { connection: REDIS, prefix: queue.prefix })
  try {
    for (const piece of killed) {
      const job = await jobs.getJob(pieceJobId(plan!, piece))
      expect(job?.stalledCounter).toBeGreaterThanOrEqual(1)
      // The killed attempt was copying, not committed: the attempt that finished wrote the piece, unless (an overloaded
      // machine) a later attempt stalled too and the last one found it written by the one before.
      const result = job?.returnvalue as { alreadyDone: boolean; rows: number }
      if (result.alreadyDone) expect(job?.stalledCounter).toBeGreaterThanOrEqual(2)
      expect(result.rows).toBeGreaterThan(0)
    }
  } finally {
    await jobs.close()
  }
  for (const child of children) if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGTERM')
})

it('the coordinator SIGKILLed mid-run: nothing visible, staging removed, and the run starts again and succeeds', { timeout: 300_000 }, async () => {
  await createTable('orphan', 200_000)
  const queue = uniqueQueue('coord')
  queues.push(queue)
  const worker = extractionWorker(db.source, db.warehouse, { queue: queue.options, progressIntervalMs: 50 })
  try {
    const coordinator = startChild(COORDINATOR, [db.sourceUrl, db.warehouseUrl, queue.name, queue.prefix, 'orphan', '10'])
    children.push(coordinator)
    const [, runId, commitJob] = (await coordinator.waitFor(/^planned (\S+) (\S+)$/)) as unknown as [string, string, string]
    // Killed once some pieces are in staging and others are not.
    await coordinator.waitFor(/^progress [1-9]\d* /)
    coordinator.process.kill('SIGKILL')
    await coordinator.exited
    expect(coordinator.lines.some((line) => line.startsWith('done'))).toBe(false)
    // The workers find the coordinator gone, abandon the run and remove its staging area; the commit job fails.
    await eventually(async () => (await stagingLeft()) === 0)
    const jobs = new Queue(queue.name, { connection: REDIS, prefix: queue.prefix })
    try {
      await eventually(async () => (await jobs.getJob(commitJob))?.failedReason !== undefined)
    } finally {
      await jobs.close()
    }
    expect(await stagingLeft()).toBe(0)
    expect(await db.warehouseSql(`select to_regclass('bronze.br_orphan') as t`)).toEqual([{ t: null }])
    expect(await db.warehouseSql(`select status from bronze.scale_out_runs where run_id = $1`, [runId])).toEqual([{ status: 'abandoned' }])

    const report = await scaleOut(db.source, db.warehouse, { tables: [{ table: 'orphan', pieces: 10 }], queue: queue.options })
    expect(report.rows).toBe(200_000)
    expect(await checksum(db.warehouseDatabase, 'bronze.br_orphan', COLUMNS)).toEqual(await checksum(db.sourceDatabase, 'orphan', COLUMNS))
  } finally {
    await worker.close()
  }
})

it(
  'a worker SIGKILLed after the commit COMMITted, before dropping staging: the commit job run again reports the committed run, rows once',
  { timeout: 180_000 },
  async () => {
    await createTable('recommit', 20_000)
    const queue = uniqueQueue('recommit')
    queues.push(queue)
    const doomed = startWorker(queue, { KILL_AFTER_COMMIT: '1' })
    await doomed.waitFor(/^ready$/)
    const runId = `recommit-${Date.now()}`
    // append without metadata: a commit run twice would insert every row twice.
    const reporting = scaleOut(db.source, db.warehouse, {
      runId,
      tables: [{ table: 'recommit', pieces: 3 }],
      to: { mode: 'append' },
      metadata: false,
      queue: queue.options,
    })
    await doomed.exited
    expect(doomed.lines).toContain('killed after commit')
    expect(await stagingLeft()).toBe(1)
    // Its commit job is handed out again (stalled) to the next worker, which finds the run committed.
    const next = startWorker(queue)
    const report = await reporting
    expect(report).toMatchObject({ runId, rows: 20_000, targets: ['bronze.br_recommit'] })
    expect(await db.warehouseSql(`select count(*)::int as n, count(distinct id)::int as ids from bronze.br_recommit`)).toEqual([{ n: 20_000, ids: 20_000 }])
    expect(await db.warehouseSql(`select status, rows::int from bronze.scale_out_runs where run_id = $1`, [runId])).toEqual([
      { status: 'committed', rows: 20_000 },
    ])
    expect(await stagingLeft()).toBe(0)
    next.process.kill('SIGTERM')
    await next.exited
  },
)
