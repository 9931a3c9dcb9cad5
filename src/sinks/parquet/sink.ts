import { randomUUID } from 'node:crypto'
import { mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { z } from 'zod'
import type { CheckpointStore } from '../../checkpoints/checkpoint.js'
import { withFileLock } from '../../checkpoints/file-lock.js'
import { parseOptions } from '../../connection/options.js'
import type { Batch, Row, RunConstants, RunContext, Shape, Sink, SinkResult, SinkTarget } from '../../contracts.js'
import { AbortedError, CheckpointConflictError, ConfigError, DatakitError, SinkWriteError } from '../../errors.js'
import { quoteIdent } from '../../pg/identifiers.js'
import { MAX_LINE_BYTES, removeStaleSpools, selectSpooled, spoolCopyText, spoolRows, type Spooled } from '../duckdb/copy-text-file.js'
import { duckdbError, fileError, withDuckDB } from '../duckdb/database.js'
import { limitMemory, readerBufferBytes } from '../duckdb/memory.js'
import { sqlString } from '../duckdb/sql.js'
import { duckColumn } from '../duckdb/types.js'
import { targetTableName } from '../target.js'
import { parquetCheckpoints, type ParquetCheckpointStore } from './checkpoints.js'
import { currentGeneration, listFiles, MANIFEST, nextRunName, pointTo, removeGenerations, removeStaleRuns, tablePaths, tmpRoot } from './layout.js'
import type { ParquetManifest } from './manifest.js'

const parquetSinkSchema = z.strictObject({
  /** The directory tables are written under: `<dir>/<table>/`. Created when missing. */
  dir: z.string().min(1),
  /** Target table (a directory name); `br_<source table>` when absent. */
  table: z.string().optional(),
  /** `replace` (default) swaps the table's directory; `append` adds this run's files. */
  mode: z.enum(['replace', 'append']).default('replace'),
  /** Columns to partition by: Hive directories `column=value/` (DuckDB's PARTITION_BY). */
  partitionBy: z.array(z.string().min(1)).default([]),
  /**
   * Rows per Parquet row group (DuckDB's ROW_GROUP_SIZE). The default, 61 440, is half DuckDB's: the writer holds a row
   * group per thread, and on the bench's table this took the run's peak RSS from 343 to 283 MB (docs/sinks.md, memory).
   */
  rowGroupRows: z.number().int().positive().default(61_440),
  compression: z.enum(['zstd', 'snappy', 'gzip', 'lz4', 'brotli', 'uncompressed']).default('zstd'),
})

export type ParquetSinkOptions = z.input<typeof parquetSinkSchema>

/**
 * Writes each run as Parquet files under `<dir>/<table>/` (readers: `read_parquet('<dir>/<table>/**\/*.parquet')`).
 * A run writes under a temporary name and becomes visible in one rename when it succeeded, with a manifest of what
 * landed (rows, files, schema, run id, source position), which also keeps an incremental source's checkpoint.
 *
 * @example
 * await extract({ from: copySource(source, { table: 'orders' }), through: [bronzeMetadata()], to: parquetSink({ dir: 'lake' }) })
 */
export function parquetSink(options: ParquetSinkOptions): Sink {
  const parsed = parseOptions(parquetSinkSchema, options)
  const { table, mode, partitionBy, rowGroupRows, compression } = parsed
  const dir = resolve(parsed.dir)
  const checkpoints = parquetCheckpoints(dir)
  const isOwn = (store: CheckpointStore): store is ParquetCheckpointStore => 'parquetDir' in store && (store as ParquetCheckpointStore).parquetDir === dir

  async function load(shape: Shape, ctx: RunContext, spool: (file: string) => Promise<Spooled>, constants?: RunConstants): Promise<SinkResult> {
    const target = targetTableName(shape, table)
    const context = { dir, table: target, mode }
    const columns = shape.columns
    if (columns.length === 0) throw new ConfigError('columns', `nothing to write to ${target}: the stream has no columns`)
    for (const name of partitionBy) {
      if (!columns.some((column) => column.name === name)) throw new ConfigError('partitionBy', `"${name}" is not a column of the stream`)
    }
    if (/[/\\]/.test(target) || target.startsWith('.')) throw new ConfigError('table', `"${target}" cannot name a directory of ${dir}`)
    const paths = tablePaths(dir, target)
    const work = join(tmpRoot(dir), `${process.pid}-${randomUUID()}`)
    const run = join(work, 'run')
    const fs = async <T>(what: Promise<T>, path: string): Promise<T> => what.catch((error: unknown) => Promise.reject(fileError(error, path, 'sink', context)))
    try {
      await fs(mkdir(run, { recursive: true }), run)
      await fs(mkdir(paths.state, { recursive: true }), paths.state)
      await removeStaleRuns(dir)
      await removeStaleSpools(work)
      const spoolFile = join(work, 'rows.copy')
      const spooled = await fs(spool(spoolFile), spoolFile)
      if (ctx.signal.aborted) throw new AbortedError('extraction aborted', { step: 'sink', context })

      const copied = constants ? columns.length - constants.columns.length : columns.length
      const readerBuffer = readerBufferBytes(spooled.longestLine, MAX_LINE_BYTES)
      const { sql: select, values } = selectSpooled(spoolFile, columns, copied, constants, 'parquet', readerBuffer)
      const duck = columns.map((column) => duckColumn(column, 'parquet'))
      const settings = [`FORMAT parquet`, `COMPRESSION ${compression}`, `ROW_GROUP_SIZE ${rowGroupRows}`]
      const destination = partitionBy.length ? run : join(run, 'part-0.parquet')
      if (partitionBy.length)
        settings.push(`PARTITION_BY (${partitionBy.map(quoteIdent).join(', ')})`, `FILENAME_PATTERN 'part-{i}'`, 'OVERWRITE_OR_IGNORE true')
      if (spooled.rows > 0 || !partitionBy.length) {
        // An in-memory DuckDB that spills to the run's directory: memory stays bounded whatever the run's size. The
        // files' row order is not kept (each thread writes its own row groups), as no reader may rely on it.
        await withDuckDB(
          ':memory:',
          async (connection) => {
            await limitMemory(connection, { writes: 'parquet', readerBufferBytes: readerBuffer, preserveOrder: false, tempDirectory: join(work, 'duckdb.tmp') })
            await connection.run(`COPY (${select}) TO ${sqlString(destination)} (${settings.join(', ')})`, values)
          },
          { signal: ctx.signal, context },
        ).catch((error: unknown) => Promise.reject(duckdbError(error, 'sink', context, ctx.signal)))
      }
      await rm(spoolFile, { force: true })
      const files = await listFiles(run)
      const sizes = await Promise.all(files.map(async (file) => ({ path: file, bytes: (await stat(join(run, file))).size })))
      const pending = ctx.checkpoint
      const store = pending && isOwn(pending.store) ? pending.store : undefined
      const finishedRows = spooled.rows

      return await withFileLock(
        paths.state,
        async (): Promise<SinkResult> => {
          // Under the table's lock: the checkpoint this run started from must still be the latest one.
          if (pending && store) {
            const current = await store.readIn(paths, pending.key)
            if ((current?.runId ?? null) !== (pending.previous?.runId ?? null)) {
              throw new CheckpointConflictError(
                `the checkpoint of ${pending.key.schema}.${pending.key.table} in ${paths.link} was moved by run ${current?.runId} since this one started; nothing was written`,
                { step: 'sink', context },
              )
            }
          } else {
            await ctx.beforeCommit?.()
          }
          if (ctx.signal.aborted) throw new AbortedError('extraction aborted', { step: 'sink', context })
          const committedAt = new Date().toISOString()
          const manifest: ParquetManifest = {
            version: 1,
            runId: ctx.runId,
            table: target,
            mode,
            rows: finishedRows,
            files: sizes,
            schema: duck.map((column, index) => ({ name: column.name, postgresType: columns[index]?.type ?? '', parquetType: column.type })),
            partitionBy,
            origin: shape.origin,
            position: pending && store ? { key: pending.key, checkpoint: { ...pending.next, rows: finishedRows, updatedAt: committedAt } } : null,
            startedAt: ctx.startedAt.toISOString(),
            committedAt,
          }
          await writeFile(join(run, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`)
          await syncTree(run, [...files, MANIFEST])
          const previous = await currentGeneration(paths)
          if (mode === 'append' && previous) {
            await rename(run, join(previous, await nextRunName(previous)))
            await syncDir(previous)
          } else {
            const generation = join(paths.state, `g-${Date.now()}-${randomUUID().slice(0, 8)}`)
            await mkdir(generation)
            await rename(run, join(generation, 'run-000001'))
            await syncDir(generation)
            await pointTo(paths, generation)
            await syncDir(dir)
            // The previous generation is kept for readers that listed its files before the swap; older ones go.
            await removeGenerations(paths, [generation, ...(previous ? [previous] : [])])
          }
          return { rows: finishedRows, bytes: spooled.bytes, target: paths.link, checkpointCommitted: store !== undefined }
        },
        { waitMs: 60_000 },
      ).catch((error: unknown) => Promise.reject(classify(error, paths.link, context)))
    } finally {
      await rm(work, { recursive: true, force: true }).catch(() => undefined)
    }
  }

  return Object.freeze({
    name: `parquet ${dir}/${table ?? 'br_<table>'} (${mode})`,
    nameFor: (shape: Shape) => `parquet ${dir}/${targetTableName(shape, table)} (${mode})`,
    atomic: true,
    mode,
    checkpoints,
    target: async (shape: Shape): Promise<SinkTarget> => {
      const paths = tablePaths(dir, targetTableName(shape, table))
      return Object.freeze({
        id: `parquet ${paths.link}`,
        exists: async () => (await currentGeneration(paths).catch(() => undefined)) !== undefined,
      })
    },
    write: (batches: AsyncIterable<Batch<Row>>, shape: Shape, ctx: RunContext) => load(shape, ctx, (file) => spoolRows(batches, shape.columns, file, ctx)),
    writeCopyText: (chunks: AsyncIterable<Buffer>, shape: Shape, ctx: RunContext, constants?: RunConstants) =>
      load(shape, ctx, (file) => spoolCopyText(chunks, file, ctx), constants),
  })
}

function classify(error: unknown, link: string, context: Record<string, string>): DatakitError {
  if (error instanceof DatakitError) return error
  if ((error as { notOurs?: boolean }).notOurs) return new ConfigError('table', (error as Error).message, { context })
  if (typeof (error as NodeJS.ErrnoException).code === 'string') return fileError(error, link, 'sink', context)
  return new SinkWriteError((error as Error).message, { step: 'sink', context, cause: error })
}

/** fsync of each file and of the directories holding them: a rename after it never exposes an unwritten file. */
async function syncTree(root: string, files: readonly string[]): Promise<void> {
  const dirs = new Set<string>([root])
  for (const file of files) {
    await syncPath(join(root, file))
    dirs.add(join(root, file, '..'))
  }
  for (const dir of dirs) await syncDir(dir)
}

const syncDir = (dir: string) => syncPath(dir)

async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
