/**
 * npm run bench -- [--rows 1000000] [--runs 3] [--warmup 1] [--cases limit,limit-binary,fast,decoded,cursor] [--json [file]]
 *
 * Measures pg-datakit's extraction paths against the physical limits measured in the same run:
 *   (a) limit    psql -c "COPY t TO STDOUT" | psql -c "COPY t2 FROM STDIN" into an equal table (text)
 *   (a2)         the same pipe in COPY's binary format (FORMAT binary): the faster limit, which targets are set against
 *   (b) fast     copySource + bronzeMetadata() + postgresSink: COPY bytes straight into COPY FROM (binary where it can)
 *   (b2)         the same, copyFormat: 'text'
 *   (c) decoded  copySource + bronzeMetadata() + a JS transform: rows decoded and re-encoded
 *   (c2)         copySource + bronzeMetadata() + parseJsonb() + expandArrays() (json): a realistic decoded pipeline
 *   (c3)         its servers' share: the rows (c2) writes, moved by the psql text pipe (what no client goes below)
 *   (d) cursor   tableSource (server-side cursor) + bronzeMetadata() + postgresSink
 *   (e), (f)     partitionedSource over a 4-partition copy of the table, read (and dropped) with 1 and 2 connections
 *   (g), (h)     their limit: psql reading the same partitions, 1 and 2 connections, bytes dropped
 *   (i), (j)     the server alone: the same partitions COPYed to the server's /dev/null (needs pg_write_server_files)
 *   cdc          change capture against pg_recvlogical on the same backlogs (bench/cdc.ts): A, --cdc-transactions
 *                one-row transactions (default 300000); B, --cdc-large transactions x updates (default 3x100000);
 *                apply's statement shapes (--cdc-shape-changes, default 20000); lag (--cdc-lag-transactions, 10000)
 *   cdc-large-tx one transaction of --cdc-huge inserts (default 2000000) captured with apply by a fresh process, sent in
 *                parts and whole at commit (--cdc-huge-streaming on,off): its peak RSS against <= 300 MB (bench/cdc.ts)
 *   (k), (l)     duckdbSink and parquetSink, each against its limit (k2), (l2): psql COPY csv into a file, then DuckDB
 *                read_csv of it into a table or to Parquet (bench/file-sinks.ts, bench/file-sinks-case.mjs)
 *   scale-out    only when asked (needs Redis): parallelSource x1/2/4 in one process against scaleOut with 1/2/4 worker
 *                processes on the same table, target <= 1.15x (bench/scale-out.ts)
 * Each run is a fresh process running dist/ (so peak RSS is the run's own); a warm-up round, then --runs rounds in which
 * the cases take turns (so a ratio compares cases under the same background load); medians per case.
 * Uses $BENCH_DATABASE_URL when set (the data table is kept there and reused), else a throwaway cluster.
 */
import { execFile as execFileCallback } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import pg from 'pg'
import { startTestPostgres, type ThrowawayPostgres } from '../src/testing/index.js'
import { cdcLargeTxReport, cdcReport, runCdcBench, runCdcLargeTxBench, type CdcBenchResult, type CdcLargeTxResult } from './cdc.js'
import { runScaleOutBench, scaleOutReport } from './scale-out.js'
import { FILE_SINK_CASES, FILE_SINK_LIMIT_OF, fileSinkVerdicts } from './file-sinks.js'

const execFile = promisify(execFileCallback)

const CASES = {
  limit: '(a) limit: psql COPY | psql COPY, text',
  'limit-binary': '(a2) limit: psql COPY | psql, binary',
  fast: '(b) COPY byte path + bronze',
  'fast-text': "(b2) byte path, copyFormat 'text'",
  decoded: '(c) COPY decoded rows + JS transform',
  realistic: '(c2) decoded + parseJsonb + expandArrays',
  'realistic-limit': "(c3) servers alone: (c2)'s rows, psql text",
  cursor: '(d) cursor (tableSource)',
  'partitions-serial': '(e) 4 partitions, 1 connection',
  'partitions-parallel': '(f) 4 partitions, 2 connections',
  'partitions-psql-serial': '(g) limit: psql, 4 partitions, 1 conn.',
  'partitions-psql-parallel': '(h) limit: psql, 4 partitions, 2 conn.',
  'partitions-server-serial': '(i) server alone, 4 partitions, 1 conn.',
  'partitions-server-parallel': '(j) server alone, 4 partitions, 2 conn.',
  ...FILE_SINK_CASES,
} as const
/** Targets as ratios to the binary pipe (a2) measured in the same run. */
const TARGETS: Partial<Record<keyof typeof CASES, number>> = { fast: 1.1, realistic: 2.5, cursor: 2.0 }
/** Peak RSS every pg-datakit case must stay within, from 1 M to 10 M rows. */
const RSS_TARGET_MB = 150
type CaseName = keyof typeof CASES
/** The case each one is measured against, in the "x limit" column: 'pipes' is the faster of (a) and (a2). */
const LIMIT_OF: Partial<Record<CaseName, CaseName | 'pipes'>> = {
  fast: 'pipes',
  'fast-text': 'pipes',
  decoded: 'pipes',
  realistic: 'pipes',
  'realistic-limit': 'pipes',
  cursor: 'pipes',
  'partitions-serial': 'partitions-psql-serial',
  'partitions-parallel': 'partitions-psql-parallel',
  ...FILE_SINK_LIMIT_OF,
}
/** Cases that run no pg-datakit code: the orchestrating Node process's RSS says nothing about them. */
const PSQL_ONLY = new Set<CaseName>([
  'limit',
  'limit-binary',
  'realistic-limit',
  'partitions-psql-serial',
  'partitions-psql-parallel',
  'partitions-server-serial',
  'partitions-server-parallel',
])
/** Cases that only read: they run first, before the write cases give the server background work. */
const READ_ONLY = new Set<CaseName>([
  'partitions-serial',
  'partitions-parallel',
  'partitions-psql-serial',
  'partitions-psql-parallel',
  'partitions-server-serial',
  'partitions-server-parallel',
])
/** Cases that may be refused by a server the bench does not own (COPY to a server file). */
const OPTIONAL = new Set<CaseName>(['partitions-server-serial', 'partitions-server-parallel'])

function argument(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`)
  if (index === -1) return undefined
  const value = process.argv[index + 1]
  return value === undefined || value.startsWith('--') ? '' : value
}

const rows = Number(argument('rows') ?? 1_000_000)
const runs = Number(argument('runs') ?? 3)
/** Warm-up rounds before the measured ones (`--warmup 0` for one long run, e.g. at 100 M rows). */
const warmup = Number(argument('warmup') ?? 1)
const requested = (
  argument('cases') ??
  'limit,limit-binary,fast,fast-text,decoded,realistic,realistic-limit,cursor,partitions-serial,partitions-parallel,partitions-psql-serial,partitions-psql-parallel,partitions-server-serial,partitions-server-parallel,duckdb,duckdb-limit,parquet,parquet-limit,cdc,cdc-large-tx'
).split(',')
const withCdc = requested.includes('cdc')
const withCdcLargeTx = requested.includes('cdc-large-tx')
const withScaleOut = requested.includes('scale-out')
const cases = requested.filter((name) => name !== 'cdc' && name !== 'cdc-large-tx' && name !== 'scale-out') as CaseName[]
const cdcTransactions = Number(argument('cdc-transactions') ?? 300_000)
const [cdcLargeTransactions, cdcLargeSize] = (argument('cdc-large') ?? '3x100000').split('x').map(Number) as [number, number]
const cdcShapeChanges = Number(argument('cdc-shape-changes') ?? 20_000)
const cdcLagTransactions = Number(argument('cdc-lag-transactions') ?? 10_000)
const cdcHuge = Number(argument('cdc-huge') ?? 2_000_000)
const cdcHugeStreaming = (argument('cdc-huge-streaming') ?? 'on,off').split(',') as ('on' | 'off')[]
const json = argument('json')
const table = `bench_${rows}`

async function generate(url: string): Promise<{ bytes: number }> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const existing = await client.query(`select count(*)::int as n from ${table}`).catch(() => undefined)
    if (existing?.rows[0]?.n !== rows) {
      console.error(`generating ${rows.toLocaleString('en')} rows into ${table} ...`)
      await client.query(`drop table if exists ${table}`)
      await client.query(`create table ${table} (
        id bigint primary key, n int not null, label text not null, note text, amount numeric(12,2), code char(3),
        tags text[], doc jsonb, active boolean, uid uuid, created_at timestamptz, updated_at timestamptz)`)
      await client.query(
        `insert into ${table}
         select g, (g * 7919) % 100000, 'item ' || g || ' of the catalogue', case when g % 4 = 0 then null else 'note ' || md5(g::text) end,
                ((g * 31) % 1000000) / 100.0, chr((65 + g % 26)::int) || chr((65 + (g / 26) % 26)::int) || 'X',
                array['tag' || (g % 10), 'tag' || (g % 7)], jsonb_build_object('id', g, 'kind', 'k' || (g % 5), 'score', (g % 100) / 3.0),
                g % 3 = 0, md5('u' || g)::uuid, '2024-01-01'::timestamptz + g * interval '1 second',
                '2024-06-01'::timestamptz + g * interval '1.5 second'
           from generate_series(1, $1::bigint) g`,
        [rows],
      )
      await client.query(`vacuum analyze ${table}`)
    }
    // The partitioned copy only for the partition cases: at 100 M rows it would be another ~25 GB.
    const parts = await client.query(`select count(*)::int as n from ${table}_parts`).catch(() => undefined)
    if (cases.some((name) => name.startsWith('partitions-')) && parts?.rows[0]?.n !== rows) {
      console.error(`copying it into ${table}_parts, 4 range partitions by id ...`)
      await client.query(`drop table if exists ${table}_parts`)
      await client.query(`create table ${table}_parts (like ${table}) partition by range (id)`)
      for (let part = 0; part < 4; part++) {
        const from = part === 0 ? 'minvalue' : Math.floor((rows * part) / 4) + 1
        const to = part === 3 ? 'maxvalue' : Math.floor((rows * (part + 1)) / 4) + 1
        await client.query(`create table ${table}_parts_${part} partition of ${table}_parts for values from (${from}) to (${to})`)
      }
      await client.query(`insert into ${table}_parts select * from ${table}`)
      await client.query(`vacuum analyze ${table}_parts`)
    }
    const size = await client.query(`select pg_total_relation_size('${table}')::bigint as bytes`)
    return { bytes: Number(size.rows[0].bytes) }
  } finally {
    await client.end()
  }
}

/** Waits for the server's background work: a checkpoint (best effort: it needs pg_checkpoint) and no autovacuum. */
async function settle(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query('checkpoint').catch(() => undefined)
    for (let waited = 0; waited < 60_000; waited += 500) {
      const busy = await client.query(`select count(*)::int as n from pg_stat_activity where backend_type = 'autovacuum worker'`)
      if (busy.rows[0]?.n === 0) return
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
  } finally {
    await client.end()
  }
}

interface Measurement {
  wallMs: number
  /** The case process's own CPU (user + system); psql's and the servers' are not in it. */
  cpuMs: number
  /** Time per step from the run report (`source copy ...`, `transform parseJsonb`, `sink ...`). */
  steps?: Record<string, number>
  copyFormat?: string | null
  copyFormatReason?: string | null
  peakHeapBytes?: number
  peakExternalBytes?: number
  maxRssBytes: number
  firstHalfPeakRssBytes: number
  secondHalfPeakRssBytes: number
}

async function measure(name: CaseName, url: string): Promise<Measurement> {
  const script = fileURLToPath(new URL('./case.mjs', import.meta.url))
  const { stdout } = await execFile(process.execPath, [script, name, url, table], {
    maxBuffer: 1 << 20,
    env: process.env,
  })
  const last = stdout.trim().split('\n').at(-1) as string
  return JSON.parse(last) as Measurement
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

async function main() {
  let throwaway: ThrowawayPostgres | undefined
  const url = process.env.BENCH_DATABASE_URL ?? (throwaway = await startTestPostgres({ urlVariable: 'BENCH_DATABASE_URL' })).url
  try {
    console.error('building dist/ (the cases run the built library, as users do) ...')
    await execFile('npx', ['tsup', '--silent'], { cwd: fileURLToPath(new URL('..', import.meta.url)) })
    // CDC first, on a quiet server: after the bulk data below is generated, the server's background work (writing
    // out and vacuuming hundreds of MB) would share the 2 cores with the capture and measure that instead.
    let cdc: CdcBenchResult | undefined
    if (withCdc) {
      cdc = await runCdcBench(url, {
        transactions: cdcTransactions,
        largeTransactions: cdcLargeTransactions,
        largeSize: cdcLargeSize,
        shapeChanges: cdcShapeChanges,
        lagTransactions: cdcLagTransactions,
      })
    }
    const cdcLargeTx: CdcLargeTxResult | undefined = withCdcLargeTx
      ? await runCdcLargeTxBench(url, { changes: cdcHuge, streaming: cdcHugeStreaming })
      : undefined
    const { bytes } = cases.length || withScaleOut ? await generate(url) : { bytes: 0 }
    // Not in the default list: it needs Redis at 127.0.0.1:6379 (bench/scale-out.ts).
    const scaleOut = withScaleOut ? await runScaleOutBench(url, { table, runs, workers: [1, 2, 4], pieces: 8 }) : undefined
    if (cases.length)
      console.error(`table ${table}: ${(bytes / 1e6).toFixed(0)} MB on disk; ${runs} runs per case after a warm-up round; the cases take turns in each round`)
    const results: Record<
      string,
      {
        label: string
        wallMs: number
        runsMs: number[]
        rowsPerSecond: number
        peakRssMb: number | null
        rssHalvesMb: [number, number] | null
        /** Median CPU of the case's Node process, as a share of its wall time. */
        nodeBusy: number | null
        steps: Record<string, number> | null
        copyFormat: string | null
        copyFormatReason: string | null
        /** Peak V8 heap (reserved) and memory outside it, MB: what the peak RSS is made of. */
        heapMb: [number, number] | null
      }
    > = {}
    // The read-only partition cases run first, on a quiet server: after the write cases the server spends a core
    // writing out and vacuuming what they loaded. Within each group, a warm-up round, then `runs` rounds in which the
    // cases take turns, so a ratio compares cases measured under the same background work.
    const samples = new Map<CaseName, Measurement[]>()
    const groups = [cases.filter((name) => READ_ONLY.has(name)), cases.filter((name) => !READ_ONLY.has(name))]
    for (const group of groups.filter((names) => names.length > 0)) {
      await settle(url)
      const measured: CaseName[] = []
      for (const name of group) {
        try {
          for (let round = 0; round < warmup; round++) await measure(name, url)
          measured.push(name)
        } catch (error) {
          if (!OPTIONAL.has(name)) throw error
          console.error(
            `  ${CASES[name]}: skipped (${
              String((error as { stderr?: string }).stderr ?? error)
                .trim()
                .split('\n')[0]
            })`,
          )
        }
      }
      for (const name of measured) samples.set(name, [])
      for (let run = 0; run < runs; run++) {
        for (const name of measured) samples.get(name)?.push(await measure(name, url))
        console.error(`  ${measured.join(', ')}: round ${run + 1} of ${runs} done`)
      }
    }
    for (const name of cases) {
      const taken = samples.get(name)
      if (!taken) continue
      const wallMs = median(taken.map((sample) => sample.wallMs))
      results[name] = {
        label: CASES[name],
        wallMs,
        runsMs: taken.map((sample) => Math.round(sample.wallMs)),
        rowsPerSecond: Math.round((rows * 1000) / wallMs),
        // The limit's work happens in psql processes; the orchestrating Node process's RSS says nothing.
        peakRssMb: PSQL_ONLY.has(name) ? null : Math.round(Math.max(...taken.map((sample) => sample.maxRssBytes)) / 1e6),
        // Peak RSS in the first and the second half of the runs: flat memory shows as two close numbers.
        rssHalvesMb: PSQL_ONLY.has(name)
          ? null
          : [
              Math.round(Math.max(...taken.map((sample) => sample.firstHalfPeakRssBytes)) / 1e6),
              Math.round(Math.max(...taken.map((sample) => sample.secondHalfPeakRssBytes)) / 1e6),
            ],
        nodeBusy: PSQL_ONLY.has(name) ? null : median(taken.map((sample) => sample.cpuMs / sample.wallMs)),
        steps: taken[0]?.steps
          ? Object.fromEntries(Object.keys(taken[0].steps).map((step) => [step, median(taken.map((sample) => sample.steps?.[step] ?? 0))]))
          : null,
        heapMb: PSQL_ONLY.has(name)
          ? null
          : [
              Math.round(Math.max(...taken.map((sample) => sample.peakHeapBytes ?? 0)) / 1e6),
              Math.round(Math.max(...taken.map((sample) => sample.peakExternalBytes ?? 0)) / 1e6),
            ],
        copyFormat: taken[0]?.copyFormat ?? null,
        copyFormatReason: taken[0]?.copyFormatReason ?? null,
      }
    }
    // Every case against the faster pipe; the targets against the binary pipe, as set.
    const pipes = (['limit', 'limit-binary'] as const).filter((name) => results[name]).sort((a, b) => results[a]!.wallMs - results[b]!.wallMs)
    const fastest = pipes[0]
    const binaryPipe = results['limit-binary']?.wallMs
    const lines = [
      `pg-datakit COPY benchmark: ${rows.toLocaleString('en')} rows, median of ${runs} runs after ${warmup} warm-up round(s)`,
      `${'case'.padEnd(42)}${'wall s'.padStart(8)}${'rows/s'.padStart(11)}${'peak RSS'.padStart(10)}${'halves'.padStart(10)}${'node'.padStart(6)}${'x limit'.padStart(9)}${'x (a2)'.padStart(8)}  target (x (a2); RSS <= ${RSS_TARGET_MB} MB)`,
    ]
    if (fastest)
      lines.splice(
        1,
        0,
        `"x limit": against the faster pipe in this run, ${CASES[fastest]} (${(results[fastest]!.wallMs / 1000).toFixed(2)} s); "node": the case process's CPU / wall`,
      )
    const summary: Record<string, unknown> = { rows, runs, tableBytes: bytes, cases: {} }
    for (const [name, result] of Object.entries(results)) {
      const limitName = LIMIT_OF[name as CaseName]
      const limit = limitName === 'pipes' ? (fastest ? results[fastest]?.wallMs : undefined) : limitName ? results[limitName]?.wallMs : undefined
      const ratio = limit ? result.wallMs / limit : null
      const toBinary = limitName === 'pipes' && binaryPipe ? result.wallMs / binaryPipe : null
      const target = TARGETS[name as CaseName]
      const verdicts = [
        ...(target ? [`<= ${target.toFixed(2)} ${toBinary !== null && toBinary <= target ? 'met' : 'MISSED'}`] : []),
        ...(result.peakRssMb !== null && limitName === 'pipes' ? [`RSS ${result.peakRssMb <= RSS_TARGET_MB ? 'met' : 'MISSED'}`] : []),
        ...fileSinkVerdicts(name, ratio, result.peakRssMb),
      ]
      lines.push(
        `${result.label.padEnd(42)}${(result.wallMs / 1000).toFixed(2).padStart(8)}${result.rowsPerSecond.toLocaleString('en').padStart(11)}${(result.peakRssMb === null ? '-' : `${result.peakRssMb} MB`).padStart(10)}${(result.rssHalvesMb ? result.rssHalvesMb.join('/') : '-').padStart(10)}${(result.nodeBusy === null ? '-' : `${Math.round(result.nodeBusy * 100)}%`).padStart(6)}${(ratio === null ? '-' : ratio.toFixed(2)).padStart(9)}${(toBinary === null ? '-' : toBinary.toFixed(2)).padStart(8)}  ${verdicts.join(', ')}`,
      )
      ;(summary.cases as Record<string, unknown>)[name] = { ...result, ratioToLimit: ratio, ratioToBinaryPipe: toBinary, target: target ?? null }
    }
    // What each pipeline spends its time on: the run report's steps (each step's own time, not its wait on the one
    // before), the COPY format taken and why, and how busy Node was. A Node that is busy most of the wall time is what
    // holds a case back; an idle one waits on the servers.
    const breakdown = Object.entries(results).filter(([, result]) => result.steps)
    if (breakdown.length) lines.push('where the time goes (median step times from the run report):')
    for (const [name, result] of breakdown) {
      const steps = Object.entries(result.steps ?? {})
        .map(([step, ms]) => `${step.replace(/^(source|transform|sink) /, '$1:').replace(/ \(.*\)$/, '')} ${(ms / 1000).toFixed(2)} s`)
        .join(', ')
      const memory = result.heapMb ? `; peak V8 heap ${result.heapMb[0]} MB, outside it ${result.heapMb[1]} MB` : ''
      const format = result.copyFormat ? `; COPY ${result.copyFormat}${result.copyFormatReason ? ` (${result.copyFormatReason})` : ''}` : ''
      const servers = name === 'realistic' ? results['realistic-limit']?.wallMs : undefined
      if (servers)
        lines.push(
          `  (c2) takes ${(result.wallMs / servers).toFixed(2)}x the servers alone moving its rows (c3); (c3) itself is ${(servers / (binaryPipe ?? servers)).toFixed(2)}x (a2)`,
        )
      lines.push(`  ${CASES[name as CaseName].split(' ')[0]} node busy ${Math.round((result.nodeBusy ?? 0) * 100)}%${memory}${format}; ${steps}`)
    }
    const speedup = (serial: CaseName, parallel: CaseName) => {
      const one = results[serial]?.wallMs
      const two = results[parallel]?.wallMs
      return one && two ? one / two : undefined
    }
    const partitionSpeedup = speedup('partitions-serial', 'partitions-parallel')
    if (partitionSpeedup) {
      const limits = [
        ['psql', speedup('partitions-psql-serial', 'partitions-psql-parallel')],
        ['the server alone', speedup('partitions-server-serial', 'partitions-server-parallel')],
      ] as const
      const measured = limits.filter(([, value]) => value !== undefined).map(([who, value]) => `${who} ${value?.toFixed(2)}x`)
      lines.push(
        `partitioned read, 2 connections vs 1: ${partitionSpeedup.toFixed(2)}x faster (target >= 1.60: ${partitionSpeedup >= 1.6 ? 'met' : 'MISSED'})` +
          (measured.length ? `; in the same run ${measured.join(', ')}` : ''),
      )
      summary.partitionSpeedup = partitionSpeedup
      summary.partitionSpeedupLimits = Object.fromEntries(limits)
    }
    if (cdc) {
      lines.push(...cdcReport(cdc))
      summary.cdc = cdc
    }
    if (cdcLargeTx) {
      lines.push(...cdcLargeTxReport(cdcLargeTx))
      summary.cdcLargeTx = cdcLargeTx
    }
    if (scaleOut) {
      lines.push(scaleOutReport(scaleOut))
      summary.scaleOut = scaleOut
    }
    console.log(lines.join('\n'))
    if (json !== undefined) {
      const text = `${JSON.stringify(summary, null, 2)}\n`
      if (json) writeFileSync(json, text)
      else console.log(text)
    }
  } finally {
    await throwaway?.stop()
  }
}

await main()
