import { availableParallelism } from 'node:os'
import type { DuckDBConnection } from '@duckdb/node-api'
import { sqlString } from './sql.js'

/**
 * What the DuckDB and Parquet sinks let DuckDB use while they load a spool file (docs/sinks.md, memory). DuckDB's
 * defaults are made for a database server (80 % of the machine's memory, a thread per core, 32 MB CSV buffers per
 * thread, rows kept in their order): a 1 M-row load grew to 500-680 MB. With these settings the whole process stays
 * flat: 273-290 MB into DuckDB, 291-301 MB into Parquet on the bench's 1 M rows (docs/performance.md#file-sinks).
 */

/** DuckDB threads: the CSV reader and the writers scale with them, and so does the memory each one holds. */
export const DUCKDB_THREADS = Math.max(1, Math.min(availableParallelism(), 4))

/**
 * DuckDB's buffer pool (`memory_limit`) when the rows are short; operators spill to the temporary directory beyond it.
 * Loading a table fits in 64 MiB; the Parquet writer holds a row group per thread while it compresses it: 64 and 96 MiB
 * ran out of memory on the bench's table with 2 threads, 128 MiB did not.
 */
const BASE_MEMORY_LIMIT = { duckdb: 64 * 1024 * 1024, parquet: 64 * 1024 * 1024 * Math.max(2, DUCKDB_THREADS) } as const
/** Reader buffer for short rows: as fast as DuckDB's 32 MB default on the bench's table, a quarter of the memory. */
const MIN_READER_BUFFER = 8 * 1024 * 1024
const MIB = 1024 * 1024

/**
 * The CSV reader's buffer for a spool file whose longest line (newline included) is `longestLine` bytes: DuckDB reads
 * a line whole within one buffer (`max_line_size` <= `buffer_size`), so the buffer grows only for a run that has such a
 * line, up to `maxLine`.
 */
export function readerBufferBytes(longestLine: number, maxLine: number): number {
  return Math.min(maxLine, Math.max(MIN_READER_BUFFER, Math.ceil((longestLine + 1) / MIB) * MIB))
}

/**
 * Sets DuckDB's memory for a load. `memory_limit` holds the reader's buffers (two per thread) with room to spare;
 * `preserve_insertion_order = false` (unless the load depends on the rows' order: merge's last row wins) lets each
 * thread write its own row groups instead of holding rows back to put them in order; what passes the limit spills to
 * `tempDirectory` (DuckDB's default for a database file is `<file>.tmp` beside it; an in-memory database has none).
 */
export async function limitMemory(
  connection: DuckDBConnection,
  options: { writes: 'duckdb' | 'parquet'; readerBufferBytes: number; preserveOrder: boolean; tempDirectory?: string },
): Promise<void> {
  const limit = Math.max(BASE_MEMORY_LIMIT[options.writes], 4 * DUCKDB_THREADS * options.readerBufferBytes)
  await connection.run(`SET threads = ${DUCKDB_THREADS}`)
  await connection.run(`SET memory_limit = '${Math.ceil(limit / MIB)}MiB'`)
  await connection.run(`SET preserve_insertion_order = ${options.preserveOrder}`)
  if (options.tempDirectory) await connection.run(`SET temp_directory = ${sqlString(options.tempDirectory)}`)
}
