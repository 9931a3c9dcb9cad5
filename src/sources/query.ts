import type { Compilable, CompiledQuery } from 'kysely'
import { z } from 'zod'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import type { Batch, OpenContext, OpenedSource, RunContext, Source } from '../contracts.js'
import { openedRead } from '../pipeline/open-source.js'
import { readWithCursor } from './cursor-reader.js'
import { describeQueryShape, normalizeQuery } from './describe.js'

export const queryOptionsSchema = z.strictObject({
  /** The name sinks use for the target table (`br_<name>`) and metadata records as `_bronze_table`. */
  name: z.string().min(1).optional(),
  /** Recorded as `_bronze_schema`. */
  schema: z.string().min(1).optional(),
  batchSize: z.number().int().positive().max(1_000_000).default(1_000),
  /** Batches hold about this many bytes at most, whatever `batchSize` says (large values). */
  maxBatchBytes: z
    .number()
    .int()
    .positive()
    .default(16 * 1024 * 1024),
})

export type QuerySourceOptions = z.input<typeof queryOptionsSchema>

/**
 * Reads the rows of a Kysely query (or any compiled query) through a server-side cursor.
 * Rows carry the query's result type. Values follow pg-datakit's lossless type map (docs/types.md):
 * declare `bigint` for int8 and `string` for numeric and timestamps in your Kysely `DB` interface.
 *
 * @example
 * const db = source.kysely<DB>()
 * const paid = querySource(source, db.selectFrom('orders').select(['id', 'total']).where('status', '=', 'paid'), { name: 'paid_orders' })
 */
export function querySource<O>(connection: Connection, query: Compilable<O> | CompiledQuery<O>, options: QuerySourceOptions = {}): Source<O> {
  const { name, schema, batchSize, maxBatchBytes } = parseOptions(queryOptionsSchema, options)
  const compiled = normalizeQuery(query)
  const describe = (ctx: Partial<RunContext>) => describeQueryShape(connection, compiled, { schema, name }, ctx)

  async function open(ctx: OpenContext = {}): Promise<OpenedSource<O>> {
    const shape = await describe(ctx)
    const read = { sql: compiled.sql, parameters: compiled.parameters, columns: shape.columns, batchSize, maxBatchBytes, context: { query: name ?? 'query' } }
    return openedRead({ shape, batches: () => readWithCursor<O>(connection, read, ctx) })
  }

  async function* batches(ctx: OpenContext = {}): AsyncGenerator<Batch<O>> {
    yield* (await open(ctx)).batches()
  }

  return Object.freeze({
    name: name ? `query ${name}` : 'query',
    open,
    shape: () => describe({}),
    batches,
    [Symbol.asyncIterator]: () => batches(),
  })
}
