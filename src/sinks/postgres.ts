import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import type { Batch, CopyBytes, Row, RunConstants, RunContext, Shape, Sink, SinkResult, SinkTarget } from '../contracts.js'
import type pg from 'pg'
import { AbortedError, classifyError, ConfigError, DatakitError, SinkWriteError, sqlStateOf, type ErrorContext } from '../errors.js'
import { countLines } from '../pg/copy-line-suffix.js'
import { copyIn } from '../pg/copy-in.js'
import { copyTextChunks, encodeRows, rowEncoder } from '../pg/copy-text-encoder.js'
import { appendToLines } from '../pg/copy-line-suffix.js'
import { copyOutOn } from '../pg/copy-out.js'
import { BinaryTuples, onlyTupleFields } from '../pg/binary-copy.js'
import { binaryLandingCheck } from '../pg/binary-types.js'
import { literal } from '../pg/inline-parameters.js'
import type { Column } from '../pg/types.js'
import { checkIdentifier, qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { targetTableName } from './target.js'
import { connectionIdentity } from '../pg/database-identity.js'
import { cancelOnAbort } from './cancel-on-abort.js'
import { postgresCheckpoints, type PostgresCheckpointStore } from '../checkpoints/postgres.js'
import type { CheckpointStore } from '../checkpoints/checkpoint.js'
import type { Connection as ConnectionClass } from '../connection/connection.js'
import {
  addConstantColumns,
  checkColumnTypes,
  columnsDdl,
  constantColumnsDdl,
  createTableSql,
  ensureSchema,
  lockForDdl,
  prepareTable,
  requireUniqueKey,
  upsertSql,
} from './warehouse-ddl.js'

const postgresSinkSchema = z.strictObject({
  schema: z.string().default('bronze'),
  /** Target table; `br_<source table>` when absent. */
  table: z.string().optional(),
  /**
   * - `replace`: the table is rebuilt from this run's rows and swapped in at commit; readers see the old
   *   table or the new one, never a part; a failed run leaves the old one untouched.
   * - `append`: rows are added in one transaction; new source columns are added to the table.
   * - `merge`: rows are upserted by primary key in one transaction (insert new keys, update existing ones).
   */
  mode: z.enum(['replace', 'append', 'merge']).default('replace'),
  /** The key `merge` upserts by; the source's primary key when absent. */
  primaryKey: z.array(z.string().min(1)).nonempty().optional(),
})

export type PostgresSinkOptions = z.input<typeof postgresSinkSchema>

/**
 * Writes to a PostgreSQL warehouse through `COPY FROM STDIN`, creating the schema and the table with the
 * source's column types. One run is one transaction.
 *
 * @example
 * postgresSink(warehouse, { mode: 'replace' }) // bronze.br_<source table>
 */
export function postgresSink(connection: Connection, options: PostgresSinkOptions = {}): Sink {
  const { schema, table, mode, primaryKey } = parseOptions(postgresSinkSchema, options)
  checkIdentifier(schema, 'schema')
  const checkpoints = postgresCheckpoints(connection, { schema })

  /**
   * One run, one transaction: prepare the target, stream COPY data in through `copy`, then swap (replace) and
   * commit. Any failure rolls back, so the warehouse is left as it was.
   */
  async function load(
    shape: Shape,
    ctx: RunContext,
    copy: (client: pg.PoolClient, statement: string, into: CopyInto) => Promise<CopyDone>,
    constants?: RunConstants,
  ): Promise<SinkResult> {
    const target = targetTableName(shape, table)
    const context = { schema, table: target, mode }
    const columns = shape.columns
    // Run constants are left out of the COPY where a staging table can supply them (replace, merge; see writeCopyText).
    const copied = constants && mode !== 'append' ? columns.slice(0, columns.length - constants.columns.length) : columns
    if (columns.length === 0) throw new ConfigError('columns', `nothing to write to ${schema}.${target}: the stream has no columns`)
    const key = mode === 'merge' ? mergeKey(shape) : undefined
    // Decided before the client is taken: telling where the store lives may need a connection of this pool.
    const pending = ctx.checkpoint
    const store = pending ? await storeIn(pending.store, connection) : undefined
    const client = await connection.acquire(ctx.signal)
    // An abort cancels whatever the client waits on (a lock, a stalled server), up to the COMMIT.
    const abort = cancelOnAbort(client, ctx.signal)
    let broken: Error | undefined
    try {
      await client.query('begin')
      await ensureSchema(client, schema)
      await checkColumnTypes(client, columns, target)
      const staging = `pgdk_stage_${randomUUID().replace(/-/g, '').slice(0, 16)}`
      // replace: a new table swapped in at commit; merge: a temporary table upserted from; append: the table itself.
      let copyInto = qualifiedName(schema, target)
      if (mode === 'replace') {
        await client.query(createTableSql(schema, staging, copied))
        copyInto = qualifiedName(schema, staging)
      } else {
        await prepareTable(client, schema, target, columns, key, context)
        if (key) {
          await requireUniqueKey(client, schema, target, key)
          const stagingColumns = [columnsDdl(copied), ...(copied !== columns && constants ? constantColumnsDdl(constants) : [])]
          await client.query(`create temporary table ${quoteIdent(staging)} (${stagingColumns.join(', ')}) on commit drop`)
          copyInto = quoteIdent(staging)
        }
      }

      const columnList = copied.map((column) => quoteIdent(column.name)).join(', ')
      const { rows, bytes, ...format } = await copy(client, `copy ${copyInto} (${columnList}) from stdin`, { table: copyInto, columns: copied })
      if (ctx.signal.aborted) throw new AbortedError('extraction aborted', { step: 'sink', context })
      if (mode === 'replace' && copied !== columns && constants) await addConstantColumns(client, schema, staging, constants)

      if (mode === 'replace') {
        await lockForDdl(client, schema, target)
        await dropForReplace(client, schema, target, context)
        await client.query(`alter table ${qualifiedName(schema, staging)} rename to ${quoteIdent(target)}`)
      }
      if (key) await client.query(upsertSql(qualifiedName(schema, target), quoteIdent(staging), columns, key))
      // The checkpoint commits with the rows it covers, when it lives in this warehouse.
      // A store elsewhere is written after the commit; it is claimed before it.
      const checkpointCommitted = store !== undefined
      if (pending && store) {
        await store.writeWith(client, pending.key, { ...pending.next, rows }, pending.previous?.runId ?? null)
      } else {
        await ctx.beforeCommit?.()
      }
      // From here an abort no longer cancels: a run aborted before is rolled back, one aborted after commits.
      abort.stop()
      if (ctx.signal.aborted) throw new AbortedError('extraction aborted', { step: 'sink', context })
      try {
        await client.query('commit')
      } catch (error) {
        // Lost during COMMIT: the transaction may or may not have committed. Never retried automatically.
        broken = error as Error
        throw classifyError(error, 'sink', { ...context, phase: 'commit' }, SinkWriteError)
      }
      return { rows, bytes, target: `${schema}.${target}`, checkpointCommitted, ...format }
    } catch (error) {
      abort.stop()
      if (!broken) {
        try {
          await client.query('rollback')
        } catch (rollbackError) {
          broken = rollbackError as Error
        }
      }
      // A statement cancelled by the abort fails as a timeout, a lock error or a lost connection would; it is the abort.
      if (ctx.signal.aborted && !(error instanceof AbortedError) && !(error instanceof DatakitError && error.context.phase === 'commit')) {
        throw new AbortedError('extraction aborted; the warehouse was left as it was', { step: 'sink', context, cause: error })
      }
      throw classifyError(error, 'sink', context, SinkWriteError)
    } finally {
      abort.close()
      client.release(broken ?? abort.destroyed)
    }
  }

  function mergeKey(shape: Shape): readonly string[] {
    const key = primaryKey ?? shape.primaryKey
    if (!key?.length) {
      throw new ConfigError('primaryKey', 'merge needs a primary key: the source has none; pass primaryKey to postgresSink')
    }
    for (const name of key) {
      if (!shape.columns.some((column) => column.name === name)) throw new ConfigError('primaryKey', `"${name}" is not a column of the stream`)
    }
    return key
  }

  function write(batches: AsyncIterable<Batch<Row>>, shape: Shape, ctx: RunContext): Promise<SinkResult> {
    const encode = rowEncoder(shape.columns)
    async function* chunks(): AsyncGenerator<CopyChunk> {
      for await (const batch of batches) {
        yield* copyTextChunks(encode, batch.rows)
      }
    }
    return load(shape, ctx, (client, statement) => copyCounting(client, statement, chunks(), ctx))
  }

  /**
   * The byte path. Run constants (bronze metadata) cost nothing per row in replace mode: after the COPY they are
   * added to the staging table as columns with a constant default, which PostgreSQL (11+) stores once in the
   * catalog for the existing rows instead of rewriting them ("fast default"); the default is then dropped.
   * Reads give every row the value. In merge mode the temporary staging table has them as column defaults, so the
   * COPY leaves them out and the upsert reads them from there. In append mode they are appended to each line.
   */
  function writeCopyText(input: AsyncIterable<Buffer>, shape: Shape, ctx: RunContext, constants?: RunConstants): Promise<SinkResult> {
    return load(shape, ctx, (client, statement) => copyCounting(client, statement, textChunks(input, constants), ctx), constants)
  }

  /**
   * The byte path in either format, decided in the run's transaction once the table the COPY goes into is ready:
   * binary where each copied column has there the type OID it has in the source and the warehouse's server reads the
   * source's binary forms (binary-types.ts), text otherwise. Run constants are handled as on the text path; in append
   * mode their binary fields, encoded by the warehouse itself, are appended to every tuple.
   */
  function writeCopy(bytes: CopyBytes, shape: Shape, ctx: RunContext, constants?: RunConstants): Promise<SinkResult> {
    return load(
      shape,
      ctx,
      async (client, statement, into) => {
        const refused =
          bytes.noBinary ??
          (bytes.binary ? await binaryLandingCheck(client, into.columns, bytes.binary.serverVersion, into.table) : 'the source has no binary COPY')
        if (refused !== undefined || !bytes.binary) {
          if (bytes.format === 'binary') throw new ConfigError('copyFormat', `binary COPY is not possible here: ${refused}`, { step: 'sink' })
          const done = await copyCounting(client, statement, textChunks(bytes.text, constants), ctx)
          return { ...done, copyFormat: 'text', ...(refused ? { copyFormatReason: refused } : {}) }
        }
        let chunks: AsyncIterable<Buffer> = bytes.binary.chunks
        if (constants && mode === 'append') {
          const tuples = new BinaryTuples(await binaryFields(client, constants.columns, constants.values, ctx))
          chunks = mapChunks(
            chunks,
            (chunk) => tuples.push(chunk),
            () => tuples.end(),
          )
        }
        return { ...(await copyBinaryCounting(client, `${statement} (format binary)`, chunks, ctx)), copyFormat: 'binary' }
      },
      constants,
    )
  }

  /** COPY text for the statement: run constants appended to each line in append mode (see writeCopyText). */
  function textChunks(input: AsyncIterable<Buffer>, constants: RunConstants | undefined): AsyncIterable<CopyChunk> {
    const perLine =
      constants && mode === 'append' ? appendToLines(Buffer.from(`\t${encodeRows([constants.values], constants.columns).slice(0, -1)}`)) : undefined
    return (async function* () {
      for await (const raw of input) {
        const chunk = perLine ? perLine(raw) : raw
        yield { chunk, rows: countLines(chunk) }
      }
    })()
  }

  /** The table a shape lands in: named by the warehouse and the table, not the mode (checkpoints are keyed by it). */
  async function targetOf(shape: Shape): Promise<SinkTarget> {
    const name = targetTableName(shape, table)
    return Object.freeze({
      id: `postgres ${await connectionIdentity(connection)} ${schema}.${name}`,
      exists: async () => {
        const { rows } = await connection.query<{ found: boolean }>('select to_regclass($1) is not null as found', [qualifiedName(schema, name)])
        return rows[0]?.found === true
      },
    })
  }

  return Object.freeze({
    name: `postgres ${schema}.${table ?? 'br_<table>'} (${mode})`,
    nameFor: (shape: Shape) => `postgres ${schema}.${targetTableName(shape, table)} (${mode})`,
    atomic: true,
    mode,
    target: targetOf,
    checkpoints,
    write,
    writeCopyText,
    writeCopy,
  })
}

/**
 * The store, when it keeps its checkpoints in this warehouse database (by the database's identity, so a store made
 * with another connection to the same database counts): then they are written in the sink's own transaction.
 */
async function storeIn(store: CheckpointStore, connection: ConnectionClass): Promise<PostgresCheckpointStore | undefined> {
  if (!('writeWith' in store)) return undefined
  const postgres = store as PostgresCheckpointStore
  if (postgres.connection === connection) return postgres
  const [own, theirs] = await Promise.all([connectionIdentity(connection), connectionIdentity(postgres.connection)])
  return own === theirs ? postgres : undefined
}

/** The table a COPY goes into (the target, a staging table or a temporary one) and the columns it names. */
interface CopyInto {
  readonly table: string
  readonly columns: readonly Column[]
}

interface CopyDone {
  readonly rows: number
  readonly bytes: number
  readonly copyFormat?: 'binary' | 'text'
  readonly copyFormatReason?: string
}

/**
 * The binary fields of values as the warehouse itself encodes them: one `COPY (SELECT ...) TO STDOUT (FORMAT binary)`
 * of literals cast to the columns' types.
 */
async function binaryFields(client: pg.ClientBase, columns: readonly Column[], values: Row, ctx: RunContext): Promise<{ fields: Buffer; count: number }> {
  const list = columns.map((column) => `${literal(values[column.name] ?? null)}::${column.type}`).join(', ')
  const parts: Buffer[] = []
  for await (const chunk of copyOutOn(client, `copy (select ${list}) to stdout (format binary)`, { phase: 'run constants' }, ctx.signal)) parts.push(chunk)
  return onlyTupleFields(Buffer.concat(parts))
}

async function* mapChunks(input: AsyncIterable<Buffer>, step: (chunk: Buffer) => Buffer, end: () => void): AsyncGenerator<Buffer> {
  for await (const chunk of input) {
    const out = step(chunk)
    if (out.length) yield out
  }
  end()
}

/** COPY FROM binary chunks: the rows are the server's count (counting tuples would cost a walk of every field). */
async function copyBinaryCounting(client: pg.ClientBase, statement: string, input: AsyncIterable<Buffer>, ctx: RunContext): Promise<CopyDone> {
  let bytes = 0
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of input) {
      bytes += chunk.length
      ctx.reportBytes?.(chunk.length)
      yield chunk
    }
  }
  const rows = await copyIn(client, statement, counted(), ctx.signal)
  return { rows, bytes }
}

interface CopyChunk {
  readonly chunk: Buffer
  readonly rows: number
}

/** COPY FROM the chunks, counting rows and bytes and reporting bytes as they go. */
async function copyCounting(
  client: pg.ClientBase,
  statement: string,
  input: AsyncIterable<CopyChunk>,
  ctx: RunContext,
): Promise<{ rows: number; bytes: number }> {
  let rows = 0
  let bytes = 0
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const { chunk, rows: count } of input) {
      rows += count
      bytes += chunk.length
      ctx.reportBytes?.(chunk.length)
      yield chunk
    }
  }
  await copyIn(client, statement, counted(), ctx.signal)
  return { rows, bytes }
}

/**
 * Drops the table a replace swaps out. Views (or other objects) that depend on it stop the drop: the error names them
 * and says what to do, and the transaction rolls back, leaving the table as it was.
 */
export async function dropForReplace(client: pg.ClientBase, schema: string, target: string, context: ErrorContext): Promise<void> {
  try {
    await client.query(`drop table if exists ${qualifiedName(schema, target)}`)
  } catch (error) {
    if (sqlStateOf(error) !== '2BP01') throw error
    const detail = (error as { detail?: string }).detail?.replaceAll('\n', '; ')
    throw new SinkWriteError(
      `${schema}.${target} has objects that depend on it${detail ? ` (${detail})` : ''}: mode 'replace' loads a new table and drops the old one, ` +
        `which PostgreSQL refuses while they exist. Drop them and create them again after the load, or use mode 'append' or 'merge'; ` +
        `${schema}.${target} was left as it was`,
      { step: 'sink', context, cause: error },
    )
  }
}
