/**
 * One measured run of one benchmark case, in its own process so that its peak RSS is its own.
 * Runs the built library (dist/), as users do. Prints one JSON line: { wallMs, rows, maxRssBytes }.
 *
 *   node bench/case.mjs <case> <url> <sourceTable>
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { bronzeMetadata, connect, copySource, expandArrays, extract, parseJsonb, partitionedSource, postgresSink, tableSource } from '../dist/index.js'
import { findPostgresBinDir } from '../dist/testing/index.js'

const [caseName, url, table] = process.argv.slice(2)

/** Reads and drops the bytes: measures a source alone (the partition cases). */
const discard = {
  name: 'discard',
  atomic: true,
  async write(batches) {
    let rows = 0
    for await (const batch of batches) rows += batch.rows.length
    return { rows, bytes: 0, target: 'discard' }
  },
  async writeCopyText(chunks) {
    let bytes = 0
    for await (const chunk of chunks) bytes += chunk.length
    return { rows: Number.NaN, bytes, target: 'discard' }
  },
}

/** A JS transform that does nothing: its presence forces decoded rows. */
const jsTransform = {
  name: 'js-identity',
  shape: (shape) => shape,
  async *apply(batches) {
    for await (const batch of batches) yield { rows: batch.rows.map((row) => row) }
  },
}

function run(command, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit', ...options })
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve(child) : reject(new Error(`${command} exited with ${code}`))))
  })
}

/** `psql COPY TO STDOUT | psql COPY FROM STDIN` in COPY's text or binary format, into an equal, empty table. */
async function psqlPipe(format, from = table) {
  const psql = join(findPostgresBinDir() ?? '/usr/bin', 'psql')
  const target = `${table}_limit_${format}`
  const options = format === 'binary' ? ' (format binary)' : ''
  await run(psql, [url, '-qAtc', `drop table if exists ${target}; create table ${target} (like ${from})`])
  const started = performance.now()
  await new Promise((resolve, reject) => {
    const out = spawn(psql, [url, '-qAtc', `copy ${from} to stdout${options}`], { stdio: ['ignore', 'pipe', 'inherit'] })
    const into = spawn(psql, [url, '-qAtc', `copy ${target} from stdin${options}`], { stdio: ['pipe', 'ignore', 'inherit'] })
    out.stdout.pipe(into.stdin)
    let exited = 0
    for (const child of [out, into]) {
      child.on('error', reject)
      child.on('exit', (code) => (code === 0 ? ++exited === 2 && resolve() : reject(new Error(`psql exited with ${code}`))))
    }
  })
  const wallMs = performance.now() - started
  // One copy of the table at a time: at 100 M rows each is ~25 GB.
  await run(psql, [url, '-qAtc', `drop table ${target}`])
  return wallMs
}

/**
 * The limits of the partition cases: psql reading the same 4 partitions and dropping the bytes (`to: 'stdout'`), or
 * the server writing them to its own /dev/null with no client at all (`to: 'server'`, needs pg_write_server_files),
 * on `connections` psql processes that take the partitions in turn, as partitionedSource's workers do.
 */
async function psqlPartitions(connections, to) {
  const psql = join(findPostgresBinDir() ?? '/usr/bin', 'psql')
  const destination = to === 'server' ? "'/dev/null'" : 'stdout'
  const commands = [0, 1, 2, 3].map((part) => ['-c', `copy (select * from ${table}_parts_${part}) to ${destination}`])
  const started = performance.now()
  await Promise.all(
    Array.from({ length: connections }, (_, worker) =>
      run(psql, [url, '-qAt', ...commands.filter((_, part) => part % connections === worker).flat()], { stdio: ['ignore', 'ignore', 'inherit'] }),
    ),
  )
  return performance.now() - started
}

/**
 * The servers' share of (c2): the rows it writes (kept once in a table) moved by the text pipe, as (c2) moves them
 * (decoded rows are written as COPY text), into an equal table. What no client can go below for that output.
 */
async function realisticRowsPipe() {
  const kept = `bronze.${table}_realistic_rows`
  const conn = connect({ url, ssl: { mode: 'disable' } })
  try {
    const { rows } = await conn.query(`select to_regclass('${kept}') is not null as found`)
    if (!rows[0].found) {
      await extract({
        from: copySource(conn, { table }),
        through: [bronzeMetadata(), parseJsonb(), expandArrays({ mode: 'json' })],
        to: postgresSink(conn, { table: `${table}_realistic_rows` }),
      })
    }
  } finally {
    await conn.close()
  }
  return psqlPipe('text', kept)
}

const LIMITS = {
  'realistic-limit': realisticRowsPipe,
  limit: () => psqlPipe('text'),
  'limit-binary': () => psqlPipe('binary'),
  'partitions-psql-serial': () => psqlPartitions(1, 'stdout'),
  'partitions-psql-parallel': () => psqlPartitions(2, 'stdout'),
  'partitions-server-serial': () => psqlPartitions(1, 'server'),
  'partitions-server-parallel': () => psqlPartitions(2, 'server'),
}

async function pipeline() {
  const conn = connect({ url, ssl: { mode: 'disable' } })
  try {
    const started = performance.now()
    const options = {
      fast: { from: copySource(conn, { table }), through: [bronzeMetadata()], to: postgresSink(conn, { table: `${table}_fast` }) },
      'fast-text': {
        from: copySource(conn, { table }),
        through: [bronzeMetadata()],
        to: postgresSink(conn, { table: `${table}_fast_text` }),
        copyFormat: 'text',
      },
      decoded: { from: copySource(conn, { table }), through: [bronzeMetadata(), jsTransform], to: postgresSink(conn, { table: `${table}_decoded` }) },
      realistic: {
        from: copySource(conn, { table }),
        through: [bronzeMetadata(), parseJsonb(), expandArrays({ mode: 'json' })],
        to: postgresSink(conn, { table: `${table}_realistic` }),
      },
      cursor: {
        from: tableSource(conn, { table, ...(process.env.BS ? { batchSize: Number(process.env.BS) } : {}) }),
        through: [bronzeMetadata()],
        to: postgresSink(conn, { table: `${table}_cursor` }),
      },
      'partitions-serial': { from: partitionedSource(conn, { table: `${table}_parts`, concurrency: 1 }), to: discard },
      'partitions-parallel': { from: partitionedSource(conn, { table: `${table}_parts`, concurrency: 2 }), to: discard },
    }[caseName]
    if (!options) throw new Error(`unknown case ${caseName}`)
    const report = await extract(options)
    if (caseName === 'fast' && report.path !== 'copy-bytes') throw new Error('the fast case did not take the byte path')
    const wallMs = performance.now() - started
    // The copy in the warehouse is dropped right away: at 100 M rows each is ~25 GB.
    if (report.target?.startsWith('bronze.')) await conn.query(`drop table if exists ${report.target}`)
    const steps = Object.fromEntries(report.steps.map((step) => [`${step.step} ${step.name}`, Math.round(step.ms)]))
    return { wallMs, rows: report.rows, copyFormat: report.copyFormat ?? null, copyFormatReason: report.copyFormatReason ?? null, steps }
  } finally {
    await conn.close()
  }
}

// RSS sampled through the run: a leak shows as a second half that peaks higher than the first.
const samples = []
// And what the RSS is made of at its peak: V8's heap (reserved), and memory outside it (Buffers, socket reads).
let heap = 0
let external = 0
const sampler = setInterval(() => {
  const usage = process.memoryUsage()
  samples.push(usage.rss)
  heap = Math.max(heap, usage.heapTotal)
  external = Math.max(external, usage.external)
}, 100)
const cpuBefore = process.cpuUsage()
// The file-sink cases (bench/file-sinks-case.mjs) load DuckDB: only their processes import it.
const fileSinks = /^(duckdb|parquet)/.test(caseName) ? await import('./file-sinks-case.mjs') : undefined
const result = fileSinks
  ? await fileSinks.runFileSinkCase(caseName, url, table, join(findPostgresBinDir() ?? '/usr/bin', 'psql'))
  : LIMITS[caseName]
    ? { wallMs: await LIMITS[caseName](), rows: null }
    : await pipeline()
// This process's CPU (not psql's, not the servers'): how much of the wall time Node itself was busy.
const cpu = process.cpuUsage(cpuBefore)
clearInterval(sampler)
const half = Math.floor(samples.length / 2)
const peak = (values) => (values.length ? Math.max(...values) : 0)
process.stdout.write(
  `${JSON.stringify({
    ...result,
    cpuMs: (cpu.user + cpu.system) / 1000,
    peakHeapBytes: heap,
    peakExternalBytes: external,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    firstHalfPeakRssBytes: peak(samples.slice(0, half)),
    secondHalfPeakRssBytes: peak(samples.slice(half)),
  })}\n`,
)
