import type { CompiledQuery } from 'kysely'
import type { Connection } from '../connection/connection.js'
import type { ExtractionType, RunContext, Shape } from '../contracts.js'
import { classifyError, ConfigError, SourceQueryError } from '../errors.js'
import { describeFields, describeTable, primaryKeyOf, type TableDescription } from '../pg/catalog.js'
import { OID, type Column } from '../pg/types.js'

/** A table's shape (and relkind) from the catalog; `columns` keeps those, in that order. */
export async function describeTableShape(
  connection: Connection,
  target: {
    schema: string
    table: string
    columns: readonly string[] | undefined
    filterColumns?: readonly string[]
    largeObjects?: readonly string[] | undefined
  },
  extractionType: ExtractionType,
  ctx: Partial<RunContext>,
): Promise<Shape & { kind: TableDescription['kind'] }> {
  const { schema, table } = target
  try {
    return await connection.withClient(async (client) => {
      const description = await describeTable(client, schema, table, target.columns)
      // Names in an equality filter are checked like selected columns, before anything runs.
      if (target.filterColumns?.length) await describeTable(client, schema, table, target.filterColumns)
      // The primary key travels with the shape (a merge sink upserts by it) when every key column is read.
      const primaryKey = await primaryKeyOf(client, description.oid)
      const complete = primaryKey.length > 0 && primaryKey.every((name) => description.columns.some((column) => column.name === name))
      return {
        origin: { source: connection.label, schema, table, extractionType },
        columns: description.columns.map((column) => (target.largeObjects?.includes(column.name) ? asLargeObject(column) : column)),
        ...(complete ? { primaryKey } : {}),
        kind: description.kind,
      }
    }, ctx.signal)
  } catch (error) {
    throw classifyError(error, 'source', { schema, table }, SourceQueryError)
  }
}

/** A large-object OID column read through `lo_get` carries the object's bytes. */
function asLargeObject(column: Column): Column {
  if ((column.parseOid ?? column.typeOid) !== OID.oid) {
    throw new ConfigError('largeObjects', `column "${column.name}" is ${column.type}, not a large-object oid`)
  }
  return { name: column.name, type: 'bytea', typeOid: OID.bytea, parseOid: OID.bytea, ...(column.nullable === undefined ? {} : { nullable: column.nullable }) }
}

/** A query's shape: planned with `LIMIT 0`, so its RowDescription gives exact types without reading a row. */
export async function describeQueryShape(
  connection: Connection,
  query: CompiledQuery<unknown>,
  origin: { schema: string | undefined; name: string | undefined },
  ctx: Partial<RunContext>,
): Promise<Shape> {
  try {
    return await connection.withClient(async (client) => {
      const result = await client.query({ text: `select * from (${query.sql}) as q limit 0`, values: [...query.parameters] })
      const names = result.fields.map((field) => field.name)
      const duplicate = names.find((field, index) => names.indexOf(field) !== index)
      if (duplicate !== undefined) {
        throw new ConfigError('query', `returns the column "${duplicate}" twice; give each column a distinct alias`)
      }
      return {
        origin: { source: connection.label, schema: origin.schema, table: origin.name, extractionType: 'query' },
        columns: await describeFields(client, result.fields),
      }
    }, ctx.signal)
  } catch (error) {
    throw classifyError(error, 'source', { query: origin.name ?? 'query' }, SourceQueryError)
  }
}

/** A compiled query without a trailing semicolon, so it can be wrapped. */
export function normalizeQuery<O>(query: { compile(): CompiledQuery<O> } | CompiledQuery<O>): CompiledQuery<O> {
  const compiled = 'compile' in query ? query.compile() : query
  return { ...compiled, sql: compiled.sql.replace(/;\s*$/, '') }
}
