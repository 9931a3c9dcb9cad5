import { existsSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import type { DuckDBConnection } from '@duckdb/node-api'
import type { CheckpointStore } from '../../checkpoints/checkpoint.js'
import { parseOptions } from '../../connection/options.js'
import type { Batch, Row, RunConstants, RunContext, Shape, Sink, SinkResult, SinkTarget } from '../../contracts.js'
import { AbortedError, ConfigError } from '../../errors.js'
import { checkIdentifier, qualifiedName, quoteIdent } from '../../pg/identifiers.js'
import { targetTableName } from '../target.js'
import { duckdbCheckpoints, type DuckDBCheckpointStore } from './checkpoints.js'
import { MAX_LINE_BYTES, removeStaleSpools, selectSpooled, spoolCopyText, spoolPath, spoolRows, type Spooled } from './copy-text-file.js'
import { duckdbError, fileError, withDuckDB } from './database.js'
import { limitMemory, readerBufferBytes } from './memory.js'
import { createTableSql, prepareTable } from './table.js'
import { duckColumn } from './types.js'

const duckdbSinkSchema = z.strictObject({
  /** The DuckDB database file (created when missing). */
  path: z.string().min(1),
  schema: z.string().default('bronze'),
  /** Target table; `br_<source table>` when absent. */
  table: z.string().optional(),
  /** `replace` (atomic swap), `append` or `merge` (upsert by key), as for postgresSink. */
  mode: z.enum(['replace', 'append', 'merge']).default('replace'),
  /** The key `merge` upserts by; the source's primary key when absent. */
  primaryKey: z.array(z.string().min(1)).nonempty().optional(),
})

export type DuckDBSinkOptions = z.input<typeof duckdbSinkSchema>

/**
 * Writes to a table of a DuckDB database file (`bronze.br_<table>` by default). A run's COPY text is spooled beside
 * the file, then loaded by DuckDB in one transaction, which also holds an incremental source's checkpoint: a failed or
 * killed run leaves the database as it was. Column types: docs/types.md.
 *
 * @example
 * await extract({ from: copySource(source, { table: 'orders' }), through: [bronzeMetadata()], to: duckdbSink({ path: 'bronze.duckdb' }) })
 */
export function duckdbSink(options: DuckDBSinkOptions): Sink {
  const { path: given, schema, table, mode, primaryKey } = parseOptions(duckdbSinkSchema, options)
  const path = resolve(given)
  checkIdentifier(schema, 'schema')
  const checkpoints = duckdbCheckpoints(path, { schema })
  const isOwn = (store: CheckpointStore): store is DuckDBCheckpointStore => 'duckdbPath' in store && (store as DuckDBCheckpointStore).duckdbPath === path

  async function load(shape: Shape, ctx: RunContext, spool: (file: string) => Promise<Spooled>, constants?: RunConstants): Promise<SinkResult> {
    const target = targetTableName(shape, table)
    const context = { schema, table: target, mode, path }
    const columns = shape.columns
    if (columns.length === 0) throw new ConfigError('columns', `nothing to write to ${schema}.${target}: the stream has no columns`)
    const copied = constants ? columns.length - constants.columns.length : columns.length
    const key = mode === 'merge' ? mergeKey(shape) : undefined
    const duck = columns.map((column) => duckColumn(column))
    // The rows are spooled before the database is opened: DuckDB's file lock is held for the load only.
    const file = spoolPath(dirname(path), ctx.runId)
    try {
      await mkdir(dirname(path), { recursive: true }).catch((error: unknown) => {
        throw fileError(error, dirname(path), 'sink', context)
      })
      await removeStaleSpools(dirname(path))
      let spooled: Spooled
      try {
        spooled = await spool(file)
      } catch (error) {
        throw error instanceof Error && 'code' in error && typeof error.code === 'string' && error.code.startsWith('E')
          ? fileError(error, file, 'sink', context)
          : error
      }
      if (ctx.signal.aborted) throw new AbortedError('extraction aborted', { step: 'sink', context })
      const readerBuffer = readerBufferBytes(spooled.longestLine, MAX_LINE_BYTES)
      const { sql: select, values } = selectSpooled(file, columns, copied, constants, 'duckdb', readerBuffer)
      const pending = ctx.checkpoint
      const store = pending && isOwn(pending.store) ? pending.store : undefined
      return await withDuckDB(
        path,
        async (connection) => {
          // merge takes the last row of a key by the rows' order in the file; replace and append need no order.
          await limitMemory(connection, { writes: 'duckdb', readerBufferBytes: readerBuffer, preserveOrder: mode === 'merge' })
          await connection.run('BEGIN TRANSACTION')
          try {
            await connection.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`)
            const into = qualifiedName(schema, target)
            const names = duck.map((column) => quoteIdent(column.name)).join(', ')
            if (mode === 'replace') {
              const staging = `pgdk_stage_${randomUUID().replace(/-/g, '').slice(0, 16)}`
              await connection.run(createTableSql(schema, staging, duck))
              await connection.run(`INSERT INTO ${qualifiedName(schema, staging)} ${select}`, values)
              await connection.run(`DROP TABLE IF EXISTS ${into}`)
              await connection.run(`ALTER TABLE ${qualifiedName(schema, staging)} RENAME TO ${quoteIdent(target)}`)
            } else {
              await prepareTable(connection, schema, target, duck)
              if (key)
                await merge(
                  connection,
                  into,
                  select,
                  values,
                  duck.map((column) => column.name),
                  key,
                )
              else await connection.run(`INSERT INTO ${into} (${names}) ${select}`, values)
            }
            if (pending && store) await store.writeWith(connection, pending.key, { ...pending.next, rows: spooled.rows }, pending.previous?.runId ?? null)
            else await ctx.beforeCommit?.()
            if (ctx.signal.aborted) throw new AbortedError('extraction aborted', { step: 'sink', context })
            await connection.run('COMMIT')
          } catch (error) {
            await connection.run('ROLLBACK').catch(() => undefined)
            throw duckdbError(error, 'sink', context, ctx.signal)
          }
          return { rows: spooled.rows, bytes: spooled.bytes, target: `${path} ${schema}.${target}`, checkpointCommitted: store !== undefined }
        },
        { signal: ctx.signal, context },
      )
    } finally {
      await rm(file, { force: true }).catch(() => undefined)
    }
  }

  function mergeKey(shape: Shape): readonly string[] {
    const key = primaryKey ?? shape.primaryKey
    if (!key?.length) throw new ConfigError('primaryKey', 'merge needs a primary key: the source has none; pass primaryKey to duckdbSink')
    for (const name of key) {
      if (!shape.columns.some((column) => column.name === name)) throw new ConfigError('primaryKey', `"${name}" is not a column of the stream`)
    }
    return key
  }

  return Object.freeze({
    name: `duckdb ${path} ${schema}.${table ?? 'br_<table>'} (${mode})`,
    nameFor: (shape: Shape) => `duckdb ${path} ${schema}.${targetTableName(shape, table)} (${mode})`,
    atomic: true,
    mode,
    checkpoints,
    target: async (shape: Shape): Promise<SinkTarget> => {
      const name = targetTableName(shape, table)
      return Object.freeze({
        id: `duckdb ${path} ${schema}.${name}`,
        exists: async () =>
          existsSync(path) &&
          withDuckDB(path, async (connection) => {
            const found = await connection.runAndReadAll(`SELECT count(*) AS n FROM duckdb_tables() WHERE schema_name = $1 AND table_name = $2`, [schema, name])
            return Number(found.getRowObjectsJS()[0]?.n) > 0
          }),
      })
    },
    write: (batches: AsyncIterable<Batch<Row>>, shape: Shape, ctx: RunContext) => load(shape, ctx, (file) => spoolRows(batches, shape.columns, file, ctx)),
    writeCopyText: (chunks: AsyncIterable<Buffer>, shape: Shape, ctx: RunContext, constants?: RunConstants) =>
      load(shape, ctx, (file) => spoolCopyText(chunks, file, ctx), constants),
  })
}

/**
 * Upsert by key, the last row of the run winning for a key it carries twice: existing keys are updated (columns the
 * stream lacks keep their values, as postgresSink's upsert does), new keys inserted. The table needs no constraint.
 */
async function merge(
  connection: DuckDBConnection,
  into: string,
  select: string,
  values: string[],
  names: readonly string[],
  key: readonly string[],
): Promise<void> {
  const staged = `pgdk_merge_${randomUUID().replace(/-/g, '').slice(0, 16)}`
  const q = quoteIdent
  await connection.run(`CREATE TEMPORARY TABLE ${q(staged)} AS SELECT *, row_number() OVER () AS pgdk_row FROM (${select})`, values)
  const latest = `(SELECT * EXCLUDE (pgdk_row) FROM ${q(staged)} QUALIFY row_number() OVER (PARTITION BY ${key.map(q).join(', ')} ORDER BY pgdk_row DESC) = 1)`
  const matches = key.map((column) => `t.${q(column)} IS NOT DISTINCT FROM s.${q(column)}`).join(' AND ')
  const others = names.filter((name) => !key.includes(name))
  if (others.length > 0) {
    await connection.run(`UPDATE ${into} AS t SET ${others.map((name) => `${q(name)} = s.${q(name)}`).join(', ')} FROM ${latest} AS s WHERE ${matches}`)
  }
  await connection.run(
    `INSERT INTO ${into} (${names.map(q).join(', ')}) SELECT ${names.map((name) => `s.${q(name)}`).join(', ')} FROM ${latest} AS s WHERE NOT EXISTS (SELECT 1 FROM ${into} AS t WHERE ${matches})`,
  )
  await connection.run(`DROP TABLE ${q(staged)}`)
}
