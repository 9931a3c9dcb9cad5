/**
 * The file-sink cases of the bench (issue #18), one measured run each, called by case.mjs in the case's own process so
 * that its peak RSS is the run's own (DuckDB runs inside the process, in the sinks and in their limits alike):
 *
 *   duckdb          copySource + bronzeMetadata() + duckdbSink (replace) into a new DuckDB file
 *   duckdb-limit    psql COPY ... TO STDOUT (FORMAT csv) into a file, then DuckDB read_csv of it into a table
 *   parquet         copySource + bronzeMetadata() + parquetSink (replace)
 *   parquet-limit   the same CSV file, then DuckDB COPY (read_csv ...) TO a Parquet file (zstd)
 *
 * A limit's two steps are timed together. DuckDB gets the settings the sinks give it (DUCKDB_SETTINGS, the same as
 * src/sinks/duckdb/memory.ts), so sink and limit are compared on the same memory and threads.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, openSync, closeSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'

/** The settings the sinks give DuckDB for rows like the bench's (src/sinks/duckdb/memory.ts), for a fair limit. */
const DUCKDB_SETTINGS = (name, tempDirectory) => [
  `SET threads = ${Math.max(1, Math.min(availableParallelism(), 4))}`,
  `SET memory_limit = '${name.startsWith('parquet') ? 64 * Math.max(2, Math.min(availableParallelism(), 4)) : 64}MiB'`,
  `SET preserve_insertion_order = false`,
  `SET temp_directory = '${tempDirectory}'`,
]
/** The sinks' CSV reader buffer for short rows (memory.ts, readerBufferBytes). */
const READER_BUFFER = 8 * 1024 * 1024
/** parquetSink's default row group (src/sinks/parquet/sink.ts, rowGroupRows). */
const PARQUET_ROW_GROUP_ROWS = 61_440

/** The bench table's columns in DuckDB types, as the sinks map them (docs/types.md), minus the bronze metadata. */
const COLUMNS =
  "{'id': 'BIGINT', 'n': 'INTEGER', 'label': 'VARCHAR', 'note': 'VARCHAR', 'amount': 'DECIMAL(12,2)', 'code': 'VARCHAR', " +
  "'tags': 'VARCHAR', 'doc': 'JSON', 'active': 'BOOLEAN', 'uid': 'UUID', 'created_at': 'TIMESTAMPTZ', 'updated_at': 'TIMESTAMPTZ'}"

/** Runs one case; resolves with `{ wallMs, rows, steps }` (steps in ms). */
export async function runFileSinkCase(name, url, table, psql) {
  const work = join(tmpdir(), `pg-datakit-bench-files-${process.pid}`)
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  try {
    return name.endsWith('-limit') ? await limit(name, url, table, psql, work) : await sink(name, url, table, work)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

async function sink(name, url, table, work) {
  const { bronzeMetadata, connect, copySource, extract } = await import('../dist/index.js')
  const to =
    name === 'duckdb'
      ? (await import('../dist/duckdb.js')).duckdbSink({ path: join(work, 'warehouse.duckdb'), mode: 'replace' })
      : (await import('../dist/parquet.js')).parquetSink({ dir: join(work, 'lake'), mode: 'replace' })
  const conn = connect({ url, ssl: { mode: 'disable' } })
  try {
    const started = performance.now()
    const report = await extract({ from: copySource(conn, { table }), through: [bronzeMetadata()], to })
    const wallMs = performance.now() - started
    // The sink's step is named by its path, which differs per process: one name across runs, for the medians.
    const steps = Object.fromEntries(report.steps.map((step) => [`${step.step} ${step.step === 'sink' ? `${name}Sink` : step.name}`, Math.round(step.ms)]))
    return { wallMs, rows: report.rows, copyFormat: report.copyFormat ?? null, copyFormatReason: report.copyFormatReason ?? null, steps }
  } finally {
    await conn.close()
  }
}

async function limit(name, url, table, psql, work) {
  const { DuckDBInstance } = await import('@duckdb/node-api')
  const csv = join(work, 'rows.csv')
  const started = performance.now()
  // psql writes the CSV straight to the file (its stdout), as `psql -c 'COPY ...' > rows.csv` would.
  const fd = openSync(csv, 'w')
  try {
    await new Promise((resolve, reject) => {
      const child = spawn(psql, [url, '-qAtc', `copy ${table} to stdout (format csv)`], { stdio: ['ignore', fd, 'inherit'] })
      child.on('error', reject)
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`psql exited with ${code}`))))
    })
  } finally {
    closeSync(fd)
  }
  const copied = performance.now()
  const instance = await DuckDBInstance.create(name === 'duckdb-limit' ? join(work, 'limit.duckdb') : ':memory:')
  const connection = await instance.connect()
  try {
    for (const setting of DUCKDB_SETTINGS(name, join(work, 'duckdb.tmp'))) await connection.run(setting)
    const read = `read_csv('${csv}', header = false, auto_detect = false, buffer_size = ${READER_BUFFER}, max_line_size = ${READER_BUFFER}, columns = ${COLUMNS})`
    if (name === 'duckdb-limit') await connection.run(`CREATE TABLE t AS SELECT * FROM ${read}`)
    else
      await connection.run(
        `COPY (SELECT * FROM ${read}) TO '${join(work, 'limit.parquet')}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${PARQUET_ROW_GROUP_ROWS})`,
      )
  } finally {
    connection.closeSync()
    instance.closeSync()
  }
  const loaded = performance.now()
  return { wallMs: loaded - started, rows: null, steps: { 'psql COPY csv': Math.round(copied - started), 'duckdb load': Math.round(loaded - copied) } }
}
