import { z } from 'zod'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import type { Batch, OpenContext, OpenedSource, Row, RunContext, Source } from '../contracts.js'
import { openedRead } from '../pipeline/open-source.js'
import { ConfigError } from '../errors.js'
import { estimateRelations } from '../pg/estimate.js'
import { checkIdentifier } from '../pg/identifiers.js'
import { readWithCursor } from './cursor-reader.js'
import { describeTableShape } from './describe.js'
import { filterColumns, selectQuery, tableFilterSchema } from './select-query.js'

export type { TableFilter } from './select-query.js'

export const tableTargetSchema = z.strictObject({
  schema: z.string().default('public'),
  table: z.string(),
  columns: z
    .array(z.string())
    .nonempty('must name at least one column')
    .refine((names) => new Set(names).size === names.length, 'must not name a column twice')
    .optional(),
  where: tableFilterSchema.optional(),
  batchSize: z.number().int().positive().max(1_000_000).default(1_000),
  /** Batches hold about this many bytes at most, whatever `batchSize` says (large values). */
  maxBatchBytes: z
    .number()
    .int()
    .positive()
    .default(16 * 1024 * 1024),
  /** Columns of large-object OIDs to read as their contents (bytea), through `lo_get`. */
  largeObjects: z.array(z.string()).nonempty().optional(),
})

export type TableSourceOptions = z.input<typeof tableTargetSchema>

/** Parses and checks table source options: names are checked before anything runs. */
export function parseTableTarget(options: unknown) {
  const parsed = parseOptions(tableTargetSchema, options)
  checkIdentifier(parsed.schema, 'schema')
  checkIdentifier(parsed.table, 'table')
  parsed.columns?.forEach((column, index) => checkIdentifier(column, `columns.${index}`))
  parsed.largeObjects?.forEach((column, index) => {
    checkIdentifier(column, `largeObjects.${index}`)
    if (parsed.columns && !parsed.columns.includes(column)) {
      throw new ConfigError(`largeObjects.${index}`, `"${column}" is not among the selected columns`)
    }
  })
  return parsed
}

/**
 * Reads a whole table, or some of its columns and rows, through a server-side cursor.
 * Identifiers are quoted by the query builder; filter values are bound parameters.
 *
 * @example
 * const orders = tableSource(source, { table: 'orders', columns: ['id', 'total'], where: sql`total > ${100}` })
 * for await (const batch of orders) console.log(batch.rows.length)
 */
export function tableSource(connection: Connection, options: TableSourceOptions): Source {
  const target = parseTableTarget(options)
  const { schema, table, columns, where, batchSize, maxBatchBytes, largeObjects } = target
  const describe = (ctx: Partial<RunContext>) =>
    describeTableShape(connection, { schema, table, columns, largeObjects, filterColumns: filterColumns(where) }, 'full', ctx)

  /** Described once: the rows read are exactly the columns the sink was told about. */
  async function open(ctx: OpenContext = {}): Promise<OpenedSource> {
    const { kind: _kind, ...shape } = await describe(ctx)
    const query = selectQuery(schema, table, shape.columns, where, largeObjects)
    const read = { sql: query.sql, parameters: query.parameters, columns: shape.columns, batchSize, maxBatchBytes, context: { schema, table } }
    return openedRead({
      shape,
      batches: () => readWithCursor<Row>(connection, read, ctx),
      // A row filter's share of the table is unknown: no estimate rather than the whole table's.
      ...(where ? {} : { estimate: () => connection.withClient((client) => estimateRelations(client, [{ schema, table }]), ctx.signal) }),
    })
  }

  async function* batches(ctx: OpenContext = {}): AsyncGenerator<Batch> {
    yield* (await open(ctx)).batches()
  }

  return Object.freeze({
    name: `table ${schema}.${table}`,
    open,
    shape: async () => (await open({})).shape,
    batches,
    [Symbol.asyncIterator]: () => batches(),
  })
}
