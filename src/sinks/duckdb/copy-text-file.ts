import { open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Batch, Row, RunConstants, RunContext } from '../../contracts.js'
import { AbortedError } from '../../errors.js'
import { copyTextChunks, encodeRows, rowEncoder } from '../../pg/copy-text-encoder.js'
import type { Column } from '../../pg/types.js'
import { quoteIdent } from '../../pg/identifiers.js'
import { duckColumn, type Warehouse } from './types.js'
import { sqlString } from './sql.js'
import { processAlive } from '../../util/process-alive.js'

/**
 * The DuckDB and Parquet sinks load a run in two steps, the way `psql COPY ... TO` a file and DuckDB's `read_csv`
 * would: the run's COPY text is written to a spool file, then DuckDB reads that file with its parallel CSV reader
 * (tab-delimited, no quoting, `\N` for NULL: COPY's text format) and converts each column in SQL (types.ts). The
 * decoded path encodes its rows as COPY text first, so both paths share one conversion.
 */
export interface Spooled {
  readonly rows: number
  readonly bytes: number
  /** The longest line's length in bytes, its newline included: it sizes DuckDB's reader buffer (memory.ts). */
  readonly longestLine: number
}

/** The longest row (as COPY text) the DuckDB and Parquet sinks load. */
export const MAX_LINE_BYTES = 64 * 1024 * 1024

const SPOOL_PREFIX = '.pg-datakit-spool-'

/** A spool file's path in `dir`, carrying this process's id so that a later run can remove one a killed run left. */
export function spoolPath(dir: string, runId: string): string {
  return join(dir, `${SPOOL_PREFIX}${process.pid}-${runId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}.copy`)
}

/** Removes spool files in `dir` whose process is gone (a run killed before its cleanup). */
export async function removeStaleSpools(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  for (const name of names) {
    if (!name.startsWith(SPOOL_PREFIX)) continue
    const pid = Number(name.slice(SPOOL_PREFIX.length).split('-')[0])
    if (Number.isInteger(pid) && pid > 0 && !processAlive(pid)) await rm(join(dir, name), { force: true })
  }
}

/** Writes COPY text chunks (cut anywhere) to `file`, pulling one at a time: the source runs at the disk's pace. */
export async function spoolCopyText(chunks: AsyncIterable<Buffer>, file: string, ctx: RunContext, suffix?: (chunk: Buffer) => Buffer): Promise<Spooled> {
  const handle = await open(file, 'w')
  let rows = 0
  let bytes = 0
  let longestLine = 0
  // Bytes of the line that the previous chunk ended in (chunks are cut anywhere).
  let lineSoFar = 0
  try {
    for await (const raw of chunks) {
      if (ctx.signal.aborted) throw new AbortedError('extraction aborted', { step: 'sink' })
      const chunk = suffix ? suffix(raw) : raw
      let start = 0
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) {
        rows++
        longestLine = Math.max(longestLine, lineSoFar + at + 1 - start)
        lineSoFar = 0
        start = at + 1
      }
      lineSoFar += chunk.length - start
      bytes += chunk.length
      ctx.reportBytes?.(chunk.length)
      await handle.write(chunk)
    }
  } finally {
    await handle.close()
  }
  return { rows, bytes, longestLine: Math.max(longestLine, lineSoFar) }
}

/** Encodes decoded rows as COPY text and spools them: the same file the byte path writes. */
export function spoolRows(batches: AsyncIterable<Batch<Row>>, columns: readonly Column[], file: string, ctx: RunContext): Promise<Spooled> {
  const encode = rowEncoder(columns)
  async function* chunks(): AsyncGenerator<Buffer> {
    for await (const batch of batches) for (const { chunk } of copyTextChunks(encode, batch.rows)) yield chunk
  }
  return spoolCopyText(chunks(), file, ctx)
}

/**
 * The SELECT that reads a spool file of `copied` columns and yields every column of `columns` in its DuckDB type:
 * the file's, converted, then the run constants (bound as parameters, converted the same way).
 */
export function selectSpooled(
  file: string,
  columns: readonly Column[],
  copied: number,
  constants: RunConstants | undefined,
  warehouse: Warehouse = 'duckdb',
  bufferBytes: number = MAX_LINE_BYTES,
): { sql: string; values: string[] } {
  const values: string[] = []
  const fields = columns.slice(0, copied).map((_, index) => `'c${index}': 'VARCHAR'`)
  const select = columns.map((column, index) => {
    const duck = duckColumn(column, warehouse)
    let raw = `c${index}`
    if (index >= copied) {
      const value = constants ? encodeRows([constants.values], [column]).slice(0, -1) : '\\N'
      if (value === '\\N') return `CAST(NULL AS ${duck.type}) AS ${quoteIdent(column.name)}`
      values.push(value)
      raw = `CAST($${values.length} AS VARCHAR)`
    }
    return `${duck.convert(raw)} AS ${quoteIdent(column.name)}`
  })
  // DuckDB's reader refuses lines longer than max_line_size and holds buffers of at least that size per thread: sized to
  // the run's longest line (readerBufferBytes), at most MAX_LINE_BYTES (docs/sinks.md, limits).
  const reader =
    `read_csv(${sqlString(file)}, delim = '\t', quote = '', escape = '', header = false, nullstr = '\\N', ` +
    `auto_detect = false, new_line = '\\n', max_line_size = ${bufferBytes}, buffer_size = ${bufferBytes}, columns = {${fields.join(', ')}})`
  return { sql: `SELECT ${select.join(', ')} FROM ${reader}`, values }
}
