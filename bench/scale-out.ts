/**
 * The scale-out case of the bench (`npm run bench -- --cases scale-out`, or on its own:
 * `npx tsx bench/scale-out.ts [--rows 1000000] [--runs 3] [--workers 1,2,4] [--pieces 8]`).
 *
 * The same table read with bronze metadata into `replace`:
 *   parallelSource xN   one process, `parallelSource` with N connections in one snapshot into `postgresSink` (extract());
 *   scale-out xN        `scaleOut` on BullMQ with N worker processes (`extractionWorker`, concurrency 1 each), each
 *                       piece written into the run's staging schema, the commit's swap: timed from the call to the
 *                       commit, the workers already running (as they are in a deployment).
 * In each round the cases take turns, so ratios compare cases under the same background load; medians per case. The
 * machine's load average is printed before and after: other processes on the same cores change every number.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { loadavg, cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { Queue } from 'bullmq'
import { bronzeMetadata, connect, extract, parallelSource, postgresSink } from '../src/index.js'
import { scaleOut } from '../src/bullmq.js'
import { startTestPostgres } from '../src/testing/index.js'

const WORKER = fileURLToPath(new URL('./scale-out-worker.ts', import.meta.url))
const REDIS = { host: '127.0.0.1', port: 6379 }

export interface ScaleOutBenchOptions {
  readonly table: string
  readonly runs: number
  readonly workers: readonly number[]
  readonly pieces: number
}

export interface ScaleOutBenchResult {
  readonly rows: number
  /** COPY text bytes of the table, as the scale-out run counted them. */
  readonly bytes: number
  readonly medianMs: Record<string, number>
  /** scale-out xN over parallelSource xN, per N measured both ways. */
  readonly overhead: Record<string, number>
  readonly rowsPerSecond: Record<string, number>
  readonly loadBefore: number[]
  readonly loadAfter: number[]
}

export async function runScaleOutBench(url: string, options: ScaleOutBenchOptions): Promise<ScaleOutBenchResult> {
  const loadBefore = loadavg()
  const connection = connect({ url, pool: { max: 12 } })
  const id = randomBytes(4).toString('hex')
  const queue = { name: `bench-${id}`, prefix: `pgdk-bench-${id}`, connection: REDIS }
  const maxWorkers = Math.max(...options.workers)
  const workers: ChildProcess[] = []
  const samples = new Map<string, number[]>()
  let rows = 0
  let bytes = 0
  try {
    // Started once, before any timing: a deployment's workers are already running when a run is enqueued.
    for (let index = 0; index < maxWorkers; index++) workers.push(await startWorker(url, queue.name, queue.prefix))
    const caseNames = options.workers.flatMap((n) => [`parallelSource x${n}`, `scale-out x${n}`])
    for (let round = -1; round < options.runs; round++) {
      for (const name of caseNames) {
        const n = Number(name.split('x').pop())
        // Only the first n workers take jobs: the others are paused for this case, before the clock starts (pausing an
        // idle BullMQ worker waits for its blocking fetch to return, which is not the run's cost).
        if (name.startsWith('scale-out')) await Promise.all(workers.map((worker, index) => signalWorker(worker, index < n)))
        const started = performance.now()
        if (name.startsWith('parallelSource')) {
          const report = await extract({
            from: parallelSource(connection, { table: options.table, concurrency: n, pieces: options.pieces }),
            through: [bronzeMetadata()],
            to: postgresSink(connection, { schema: 'bench_parallel', mode: 'replace' }),
          })
          rows = report.rows
        } else {
          const report = await scaleOut(connection, connection, {
            tables: [{ table: options.table, pieces: options.pieces }],
            to: { schema: 'bench_scale_out' },
            queue,
          })
          rows = report.rows
          bytes = report.bytes
        }
        const ms = performance.now() - started
        if (round >= 0) samples.set(name, [...(samples.get(name) ?? []), ms])
        console.error(`  ${round < 0 ? 'warm-up' : `round ${round + 1}`}: ${name} ${(ms / 1000).toFixed(2)} s (load ${loadavg()[0]?.toFixed(2)})`)
      }
    }
  } finally {
    for (const worker of workers) worker.kill('SIGTERM')
    await connection.close()
    const jobs = new Queue(queue.name, { connection: REDIS, prefix: queue.prefix })
    await jobs.obliterate({ force: true }).catch(() => undefined)
    await jobs.close()
  }
  const medianMs = Object.fromEntries([...samples].map(([name, values]) => [name, median(values)]))
  const overhead: Record<string, number> = {}
  for (const n of options.workers) {
    const parallel = medianMs[`parallelSource x${n}`]
    const scaled = medianMs[`scale-out x${n}`]
    if (parallel && scaled) overhead[`x${n}`] = scaled / parallel
  }
  const rowsPerSecond = Object.fromEntries(Object.entries(medianMs).map(([name, ms]) => [name, Math.round(rows / (ms / 1000))]))
  return { rows, bytes, medianMs, overhead, rowsPerSecond, loadBefore, loadAfter: loadavg() }
}

export function scaleOutReport(result: ScaleOutBenchResult): string {
  const lines = [
    `scale-out (${result.rows.toLocaleString('en')} rows, ${(result.bytes / 1e6).toFixed(0)} MB of COPY text, ${cpus().length} cores; load average before ${fmtLoad(result.loadBefore)}, after ${fmtLoad(result.loadAfter)})`,
  ]
  for (const [name, ms] of Object.entries(result.medianMs)) {
    lines.push(`  ${name.padEnd(20)} ${(ms / 1000).toFixed(2).padStart(7)} s  ${result.rowsPerSecond[name]?.toLocaleString('en').padStart(10)} rows/s`)
  }
  const base = result.medianMs['scale-out x1']
  for (const [key, ratio] of Object.entries(result.overhead)) {
    lines.push(`  scale-out ${key} / parallelSource ${key}: ${ratio.toFixed(2)}x (target <= 1.15x) ${ratio <= 1.15 ? 'PASS' : 'FAIL'}`)
  }
  if (base) {
    for (const [name, ms] of Object.entries(result.medianMs)) {
      if (name.startsWith('scale-out') && name !== 'scale-out x1') lines.push(`  ${name} speed-up over x1: ${(base / ms).toFixed(2)}x`)
    }
  }
  return lines.join('\n')
}

function fmtLoad(load: number[]): string {
  return load.map((value) => value.toFixed(2)).join(' / ')
}

/** Pauses (false) or resumes (true) a worker process: SIGSTOP would also stop its lock renewals, so it is told instead. */
async function signalWorker(worker: ChildProcess, active: boolean): Promise<void> {
  worker.stdin?.write(`${active ? 'resume' : 'pause'}\n`)
  await new Promise<void>((resolve) => {
    const onData = (data: Buffer) => {
      if (data.toString().includes(active ? 'resumed' : 'paused')) {
        worker.stdout?.off('data', onData)
        resolve()
      }
    }
    worker.stdout?.on('data', onData)
  })
}

function startWorker(url: string, name: string, prefix: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, url, name, prefix], { stdio: ['pipe', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    child.stdout.on('data', function onData(data: Buffer) {
      if (data.toString().includes('ready')) {
        child.stdout.off('data', onData)
        resolve(child)
      }
    })
    child.on('exit', (code) => reject(new Error(`a scale-out worker exited (${code}) before it was ready`)))
  })
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

async function generate(url: string, table: string, rows: number): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const existing = await client.query(`select count(*)::int as n from ${table}`).catch(() => undefined)
    if (existing?.rows[0]?.n === rows) return
    console.error(`generating ${rows.toLocaleString('en')} rows into ${table} ...`)
    await client.query(`drop table if exists ${table}`)
    await client.query(`create table ${table} (id bigint primary key, n int not null, label text not null, note text, amount numeric(12,2),
      tags text[], doc jsonb, active boolean, uid uuid, created_at timestamptz)`)
    await client.query(
      `insert into ${table} select g, (g * 7919) % 100000, 'item ' || g || ' of the catalogue', case when g % 4 = 0 then null else 'note ' || md5(g::text) end,
              ((g * 31) % 1000000) / 100.0, array['tag' || (g % 10), 'tag' || (g % 7)], jsonb_build_object('id', g, 'kind', 'k' || (g % 5)),
              g % 3 = 0, md5('u' || g)::uuid, '2024-01-01'::timestamptz + g * interval '1 second'
         from generate_series(1, $1::bigint) g`,
      [rows],
    )
    await client.query(`vacuum analyze ${table}`)
  } finally {
    await client.end()
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argument = (name: string) => {
    const index = process.argv.indexOf(`--${name}`)
    return index >= 0 ? process.argv[index + 1] : undefined
  }
  const rows = Number(argument('rows') ?? 1_000_000)
  const throwaway = process.env.BENCH_DATABASE_URL ? undefined : await startTestPostgres({ urlVariable: 'BENCH_DATABASE_URL' })
  const url = process.env.BENCH_DATABASE_URL ?? throwaway!.url
  try {
    const table = `bench_scale_${rows}`
    await generate(url, table, rows)
    const result = await runScaleOutBench(url, {
      table,
      runs: Number(argument('runs') ?? 3),
      workers: (argument('workers') ?? '1,2,4').split(',').map(Number),
      pieces: Number(argument('pieces') ?? 8),
    })
    console.log(scaleOutReport(result))
  } finally {
    await throwaway?.stop()
  }
}
