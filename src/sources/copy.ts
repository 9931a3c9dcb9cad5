import type { Compilable, CompiledQuery } from 'kysely'
import type { Connection } from '../connection/connection.js'
import { classifyError, ConfigError, SourceQueryError } from '../errors.js'
import type { Batch, BinaryCopy, OpenContext, OpenedSource, RunContext, Shape, Source } from '../contracts.js'
import { openedRead } from '../pipeline/open-source.js'
import { parseOptions } from '../connection/options.js'
import { copyOut } from '../pg/copy-out.js'
import { decodeCopyBatches } from '../pg/copy-batches.js'
import { binarySourceCheck } from '../pg/binary-types.js'
import { estimateRelations } from '../pg/estimate.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { inlineParameters } from '../pg/inline-parameters.js'
import { describeQueryShape, describeTableShape, normalizeQuery } from './describe.js'
import { filterColumns, selectQuery } from './select-query.js'
import { parseTableTarget, type TableSourceOptions } from './table.js'
import { queryOptionsSchema, type QuerySourceOptions } from './query.js'

export type CopySourceOptions = TableSourceOptions | (QuerySourceOptions & { query: Compilable<unknown> | CompiledQuery<unknown> })

interface CopyPlan {
  readonly shape: Shape
  /** `COPY ... TO STDOUT`, without its options. */
  readonly statement: string
  /** The relation whose statistics estimate the run's rows: a whole table's; none for a query or a row filter. */
  readonly estimateOf?: { readonly schema: string; readonly table: string }
}

/**
 * Reads a table (or a query) with `COPY (...) TO STDOUT`, PostgreSQL's fastest way out. With `postgresSink` and
 * byte-level transforms (`bronzeMetadata`), `extract()` moves the COPY bytes straight into `COPY FROM` without
 * decoding a row, in COPY's binary format where every column lands as its own type (report.copyFormat); with any
 * other step the bytes are decoded into the same rows `tableSource` gives.
 *
 * COPY takes no bind parameters, so filter values are written into the statement as escaped literals
 * (docs/sources.md explains why that is safe).
 *
 * @example
 * await extract({ from: copySource(source, { table: 'orders' }), through: [bronzeMetadata()], to: postgresSink(warehouse) })
 */
export function copySource(connection: Connection, options: CopySourceOptions): Source {
  const plan: (ctx: Partial<RunContext>) => Promise<CopyPlan> = 'query' in options ? queryPlan(connection, options) : tablePlan(connection, options)
  const batchSize = options.batchSize ?? 1_000
  const maxBatchBytes = options.maxBatchBytes ?? 16 * 1024 * 1024
  const context = 'query' in options ? { query: options.name ?? 'query' } : { schema: options.schema ?? 'public', table: options.table }
  const name = 'query' in options ? `copy query${options.name ? ` ${options.name}` : ''}` : `copy ${context.schema}.${context.table}`

  /** Planned once: the COPY statement reads exactly the columns of the shape the sink was told about. */
  async function open(ctx: OpenContext = {}): Promise<OpenedSource> {
    const { shape, statement, estimateOf } = await plan(ctx)
    const { serverVersion, refused } = await connection
      .withClient((client) => binarySourceCheck(client, shape.columns), ctx.signal)
      .catch((error: unknown) => Promise.reject(classifyError(error, 'source', context, SourceQueryError)))
    const copyBinary: BinaryCopy = Object.freeze({
      serverVersion,
      refused,
      chunks: () => copyOut(connection, `${statement} (format binary)`, ctx, context),
    })
    return openedRead({
      shape,
      copyText: () => copyOut(connection, statement, ctx, context),
      copyBinary,
      ...(estimateOf ? { estimate: () => connection.withClient((client) => estimateRelations(client, [estimateOf]), ctx.signal) } : {}),
      batches: () => decodeCopyBatches(copyOut(connection, statement, ctx, context), shape.columns, { batchSize, maxBatchBytes, context }),
    })
  }

  async function* copyText(ctx: OpenContext = {}): AsyncGenerator<Buffer> {
    yield* (await open(ctx)).copyText!()
  }

  async function* batches(ctx: OpenContext = {}): AsyncGenerator<Batch> {
    yield* (await open(ctx)).batches()
  }

  return Object.freeze({
    name,
    open,
    shape: async () => (await plan({})).shape,
    batches,
    copyText,
    [Symbol.asyncIterator]: () => batches(),
  })
}

function tablePlan(connection: Connection, options: TableSourceOptions) {
  const { schema, table, columns, where, largeObjects } = parseTableTarget(options)
  return async (ctx: Partial<RunContext>): Promise<CopyPlan> => {
    const { kind, ...shape } = await describeTableShape(connection, { schema, table, columns, largeObjects, filterColumns: filterColumns(where) }, 'full', ctx)
    if (shape.columns.length === 0) throw new ConfigError('table', `table "${schema}"."${table}" has no columns to copy`)
    // A plain table without a filter is copied directly (a little faster than a query); anything else through a query,
    // and so is a table with stored generated columns, which COPY TO refuses to name (PostgreSQL 12-17).
    if (kind === 'r' && !where && !largeObjects && !(await hasGeneratedColumns(connection, schema, table, ctx))) {
      const list = shape.columns.map((column) => quoteIdent(column.name)).join(', ')
      return { shape, statement: `copy ${qualifiedName(schema, table)} (${list}) to stdout`, estimateOf: { schema, table } }
    }
    const query = selectQuery(schema, table, shape.columns, where, largeObjects)
    return { shape, statement: `copy (${inlineParameters(query.sql, query.parameters)}) to stdout`, ...(where ? {} : { estimateOf: { schema, table } }) }
  }
}

function queryPlan(connection: Connection, options: QuerySourceOptions & { query: Compilable<unknown> | CompiledQuery<unknown> }) {
  const { query, ...rest } = options
  const { name, schema } = parseOptions(queryOptionsSchema, rest)
  const compiled = normalizeQuery(query)
  return async (ctx: Partial<RunContext>): Promise<CopyPlan> => {
    const shape = await describeQueryShape(connection, compiled, { schema, name }, ctx)
    return { shape, statement: `copy (${inlineParameters(compiled.sql, compiled.parameters)}) to stdout` }
  }
}

async function hasGeneratedColumns(connection: Connection, schema: string, table: string, ctx: Partial<RunContext>): Promise<boolean> {
  return connection.withClient(async (client) => {
    const { rows } = await client.query<{ found: boolean }>(
      `select exists (select 1 from pg_attribute where attrelid = to_regclass($1) and attgenerated <> '' and not attisdropped) as found`,
      [qualifiedName(schema, table)],
    )
    return rows[0]?.found === true
  }, ctx.signal)
}
