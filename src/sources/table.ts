import { sql, type Expression, type ExpressionBuilder, type SqlBool } from 'kysely'
import { z } from 'zod'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import type { Batch, Row, RunContext, Shape, Source } from '../contracts.js'
import { classifyError, SourceQueryError } from '../errors.js'
import { describeTable } from '../pg/catalog.js'
import { checkIdentifier } from '../pg/identifiers.js'
import { builder } from '../pg/sql-builder.js'
import type { Column } from '../pg/types.js'
import { readWithCursor } from './cursor-reader.js'

/** A filter: a Kysely expression (`sql\`amount > ${100}\``), a Kysely callback, or column equalities. */
export type TableFilter =
  | Expression<SqlBool>
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  | ((eb: ExpressionBuilder<any, any>) => Expression<SqlBool>)
  | Readonly<Record<string, unknown>>

const tableSourceSchema = z.strictObject({
  schema: z.string().default('public'),
  table: z.string(),
  columns: z
    .array(z.string())
    .nonempty('must name at least one column')
    .refine((names) => new Set(names).size === names.length, 'must not name a column twice')
    .optional(),
  where: z.custom<TableFilter>((value) => typeof value === 'function' || (typeof value === 'object' && value !== null), {
    message: 'must be a Kysely expression, an (eb) => expression callback, or an object of column values',
  }).optional(),
  batchSize: z.number().int().positive().max(1_000_000).default(10_000),
})

export type TableSourceOptions = z.input<typeof tableSourceSchema>

/**
 * Reads a whole table, or some of its columns and rows, through a server-side cursor.
 * Identifiers are quoted by the query builder; filter values are bound parameters.
 *
 * @example
 * const orders = tableSource(source, { table: 'orders', columns: ['id', 'total'], where: sql`total > ${100}` })
 * for await (const batch of orders) console.log(batch.rows.length)
 */
export function tableSource(connection: Connection, options: TableSourceOptions): Source {
  const { schema, table, columns, where, batchSize } = parseOptions(tableSourceSchema, options)
  checkIdentifier(schema, 'schema')
  checkIdentifier(table, 'table')
  columns?.forEach((column, index) => checkIdentifier(column, `columns.${index}`))
  const context = { schema, table }

  const describe = async (ctx: Partial<RunContext>): Promise<Shape> => {
    try {
      const description = await connection.withClient(
        (client) => describeTable(client, schema, table, columns),
        ctx.signal,
      )
      if (where && typeof where === 'object' && !isExpression(where)) {
        // Names in an equality filter are checked like selected columns, before anything runs.
        await connection.withClient((client) => describeTable(client, schema, table, Object.keys(where)), ctx.signal)
      }
      return {
        origin: { source: connection.label, schema, table, extractionType: 'full' },
        columns: description.columns,
      }
    } catch (error) {
      throw classifyError(error, 'source', context, SourceQueryError)
    }
  }

  async function* batches(ctx: Partial<RunContext> = {}): AsyncGenerator<Batch> {
    const shape = await describe(ctx)
    const query = selectQuery(schema, table, shape.columns, where)
    yield* readWithCursor<Row>(
      connection,
      { sql: query.sql, parameters: query.parameters, columns: shape.columns, batchSize, context },
      ctx,
    )
  }

  return Object.freeze({
    name: `table ${schema}.${table}`,
    shape: () => describe({}),
    batches,
    [Symbol.asyncIterator]: () => batches(),
  })
}

function isExpression(value: object): value is Expression<SqlBool> {
  return typeof (value as { toOperationNode?: unknown }).toOperationNode === 'function'
}

function selectQuery(schema: string, table: string, columns: readonly Column[], where: TableFilter | undefined) {
  let query = builder
    .selectFrom(sql`${sql.id(schema, table)}`.as(table))
    .select(columns.map((column) => sql.id(column.name).as(column.name)))
  if (where) {
    if (typeof where === 'function' || isExpression(where)) {
      query = query.where(where as Expression<SqlBool>)
    } else {
      for (const [name, value] of Object.entries(where)) {
        const ref = sql.id(name)
        query = query.where(
          value === null ? sql<SqlBool>`${ref} is null` : Array.isArray(value) ? sql<SqlBool>`${ref} = any(${value})` : sql<SqlBool>`${ref} = ${value}`,
        )
      }
    }
  }
  return query.compile()
}
