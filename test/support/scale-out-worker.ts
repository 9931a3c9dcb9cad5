/**
 * One extraction worker process for the scale-out tests. It prints what it does, one line each, so the parent can
 * kill it mid-piece: "ready", "active <piece>", "progress <piece> <rows>" (rows copied, not committed yet),
 * "committed <piece> <rows>", "completed <piece>". With KILL_AFTER_COMMIT=1 it SIGKILLs itself once a commit job has
 * committed, before it drops the staging schema ("killed after commit").
 *   node --import tsx test/support/scale-out-worker.ts <sourceUrl> <warehouseUrl> <queue> <prefix>
 */
import { connect } from '../../src/index.js'
import { extractionWorker } from '../../src/bullmq.js'
import { REDIS } from './redis.js'

const [sourceUrl, warehouseUrl, name, prefix] = process.argv.slice(2) as [string, string, string, string]
const source = connect(sourceUrl)
const warehouse = connect(warehouseUrl)
if (process.env.KILL_AFTER_COMMIT) {
  // The commit drops the staging schema through warehouse.query once its transaction committed: die right there.
  const query = warehouse.query.bind(warehouse)
  warehouse.query = ((text: string, ...rest: unknown[]) => {
    if (/^drop schema/.test(text)) {
      process.stdout.write('killed after commit\n')
      process.kill(process.pid, 'SIGKILL')
    }
    return (query as (text: string, ...rest: unknown[]) => unknown)(text, ...rest)
  }) as typeof warehouse.query
}
const worker = extractionWorker(source, warehouse, {
  queue: { name, prefix, connection: REDIS },
  concurrency: Number(process.env.WORKER_CONCURRENCY ?? 1),
  lockDurationMs: 5_000,
  stalledIntervalMs: 1_000,
  progressIntervalMs: Number(process.env.PROGRESS_MS ?? 100),
})
const pieceOf = (job: { data: object }) => ('pieceId' in job.data ? String(job.data.pieceId) : 'commit')
worker.worker.on('active', (job) => process.stdout.write(`active ${pieceOf(job)}\n`))
worker.worker.on('progress', (job, progress) => {
  const { rows, done } = progress as { rows: number; done: boolean }
  process.stdout.write(`${done ? 'committed' : 'progress'} ${pieceOf(job)} ${rows}\n`)
})
worker.worker.on('completed', (job) => process.stdout.write(`completed ${pieceOf(job)}\n`))
worker.worker.on('failed', (job, error) => process.stdout.write(`failed ${job ? pieceOf(job) : '?'} ${error.message.replaceAll('\n', ' ')}\n`))
await worker.worker.waitUntilReady()
process.stdout.write('ready\n')
/** A failed stop or pause is reported and ends the process with exit code 1, not as an unhandled rejection. */
const fail = (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
}
async function stop(): Promise<void> {
  await worker.close()
  await source.close()
  await warehouse.close()
  process.exit(0)
}
process.on('SIGTERM', () => {
  stop().catch(fail)
})
