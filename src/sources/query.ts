import type { Compilable, CompiledQuery } from 'kysely'
import { z } from 'zod'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import type { Batch, RunContext, Shape, Source } from '../contracts.js'
import { ConfigError, classifyError, SourceQueryError } from '../errors.js'
import { describeFields } from '../pg/catalog.js'
import { readWithCursor } from './cursor-reader.js'

const querySourceSchema = z.strictObject({
  /** The name sinks use for the target table (`br_<name>`) and metadata records as `_bronze_table`. */
  name: z.string().min(1).optional(),
  /** Recorded as `_bronze_schema`. */
  schema: z.string().min(1).optional(),
  batchSize: z.number().int().positive().max(1_000_000).default(10_000),
})

export type QuerySourceOptions = z.input<typeof querySourceSchema>

/**
 * Reads the rows of a Kysely query (or any compiled query) through a server-side cursor.
 * Rows carry the query's result type. Values follow pg-datakit's lossless type map (docs/types.md):
 * declare `bigint` for int8 and `string` for numeric and timestamps in your Kysely `DB` interface.
 *
 * @example
 * const db = source.kysely<DB>()
 * const paid = querySource(source, db.selectFrom('orders').select(['id', 'total']).where('status', '=', 'paid'), { name: 'paid_orders' })
 */
export function querySource<O>(
  connection: Connection,
  query: Compilable<O> | CompiledQuery<O>,
  options: QuerySourceOptions = {},
): Source<O> {
  const { name, schema, batchSize } = parseOptions(querySourceSchema, options)
  const compiled: CompiledQuery<O> = 'compile' in query ? query.compile() : query
  const text = compiled.sql.replace(/;\s*$/, '')
  const context = { query: name ?? 'query' }

  const describe = async (ctx: Partial<RunContext>): Promise<Shape> => {
    try {
      return await connection.withClient(async (client) => {
        // Planning the query with LIMIT 0 gives its RowDescription without reading any row.
        const result = await client.query({ text: `select * from (${text}) as q limit 0`, values: [...compiled.parameters] })
        const names = result.fields.map((field) => field.name)
        const duplicate = names.find((field, index) => names.indexOf(field) !== index)
        if (duplicate !== undefined) {
          throw new ConfigError('query', `returns the column "${duplicate}" twice; give each column a distinct alias`)
        }
        return {
          origin: { source: connection.label, schema, table: name, extractionType: 'query' },
          columns: await describeFields(client, result.fields),
        }
      }, ctx.signal)
    } catch (error) {
      throw classifyError(error, 'source', context, SourceQueryError)
    }
  }

  async function* batches(ctx: Partial<RunContext> = {}): AsyncGenerator<Batch<O>> {
    const shape = await describe(ctx)
    yield* readWithCursor<O>(
      connection,
      { sql: text, parameters: compiled.parameters, columns: shape.columns, batchSize, context },
      ctx,
    )
  }

  return Object.freeze({
    name: name ? `query ${name}` : 'query',
    shape: () => describe({}),
    batches,
    [Symbol.asyncIterator]: () => batches(),
  })
}
