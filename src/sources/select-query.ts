import { sql, type Expression, type ExpressionBuilder, type SelectQueryBuilder, type SqlBool } from 'kysely'
import { z } from 'zod'
import { builder } from '../pg/sql-builder.js'
import type { Column } from '../pg/types.js'

/** A filter: a Kysely expression (`sql\`amount > ${100}\``), a Kysely callback, or column equalities. */
export type TableFilter =
  | Expression<SqlBool>
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the user's callback is typed by the table it filters, unknown here
  | ((eb: ExpressionBuilder<any, any>) => Expression<SqlBool>)
  | Readonly<Record<string, unknown>>

export const tableFilterSchema = z.custom<TableFilter>((value) => typeof value === 'function' || (typeof value === 'object' && value !== null), {
  message: 'must be a Kysely expression, an (eb) => expression callback, or an object of column values',
})

export function isExpression(value: object): value is Expression<SqlBool> {
  return typeof (value as { toOperationNode?: unknown }).toOperationNode === 'function'
}

/** The columns an equality filter names, to be checked in the catalog. */
export function filterColumns(where: TableFilter | undefined): string[] {
  return where && typeof where === 'object' && !isExpression(where) ? Object.keys(where) : []
}

/**
 * `select <columns> from <schema>.<table> where <filter>`, built by Kysely: identifiers quoted, values bound.
 * `sql.id` is used for names from the catalog because Kysely's string references split on dots.
 */
export function selectQuery(schema: string, table: string, columns: readonly Column[], where: TableFilter | undefined, largeObjects: readonly string[] = []) {
  const query = builder
    .selectFrom(sql`${sql.id(schema, table)}`.as(table))
    .select(
      columns.map((column) => (largeObjects.includes(column.name) ? sql`lo_get(${sql.id(column.name)})`.as(column.name) : sql.id(column.name).as(column.name))),
    )
  return withFilter(query, where).compile()
}

/** Adds a user filter to a query: an expression or callback as Kysely takes it, equalities as bound values. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any table's query: its database type is known only at run time
export function withFilter(query: SelectQueryBuilder<any, any, any>, where: TableFilter | undefined): SelectQueryBuilder<any, any, any> {
  if (!where) return query
  if (typeof where === 'function' || isExpression(where)) return query.where(where as Expression<SqlBool>)
  let filtered = query
  for (const [name, value] of Object.entries(where)) {
    const ref = sql.id(name)
    filtered = filtered.where(
      value === null ? sql<SqlBool>`${ref} is null` : Array.isArray(value) ? sql<SqlBool>`${ref} = any(${value})` : sql<SqlBool>`${ref} = ${value}`,
    )
  }
  return filtered
}

/**
 * A filter as stable text (compiled SQL and its parameters), part of an incremental pipeline's identity: another
 * filter is another pipeline, with its own checkpoint. '' when there is none.
 */
export function filterText(where: TableFilter | undefined): string {
  if (!where) return ''
  const compiled = withFilter(builder.selectFrom('t'), where).compile()
  return JSON.stringify([compiled.sql, compiled.parameters], (_key, value: unknown) =>
    typeof value === 'bigint' ? `${value}n` : value instanceof Uint8Array ? Buffer.from(value).toString('hex') : value,
  )
}
