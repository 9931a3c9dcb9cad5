import type { DuckDBConnection } from '@duckdb/node-api'
import { SchemaDriftError, type ColumnDrift } from '../../errors.js'
import { qualifiedName, quoteIdent } from '../../pg/identifiers.js'
import type { DuckColumn } from './types.js'

/** `CREATE TABLE` for the columns in their DuckDB types. */
export function createTableSql(schema: string, table: string, columns: readonly DuckColumn[]): string {
  return `CREATE TABLE ${qualifiedName(schema, table)} (${columns.map((column) => `${quoteIdent(column.name)} ${column.type}`).join(', ')})`
}

/** Types an existing column may keep when the stream brings a narrower one of the same kind (every value fits). */
const HOLDS: Record<string, readonly string[]> = {
  BIGINT: ['SMALLINT', 'INTEGER', 'UINTEGER'],
  INTEGER: ['SMALLINT'],
  DOUBLE: ['FLOAT'],
}

/**
 * For append and merge: creates the table when missing, adds the columns the stream has and the table lacks (older
 * rows get NULL), and refuses, before anything is written, a column whose type changed (SchemaDriftError): DuckDB
 * tables are not widened in place by this version.
 */
export async function prepareTable(connection: DuckDBConnection, schema: string, table: string, columns: readonly DuckColumn[]): Promise<void> {
  const existing = await connection.runAndReadAll(
    `SELECT column_name AS name, data_type AS type FROM duckdb_columns() WHERE schema_name = $1 AND table_name = $2`,
    [schema, table],
  )
  // duckdb_columns() gives both as VARCHAR.
  const have = new Map(existing.getRowObjectsJS().map((row) => [row.name as string, row.type as string]))
  if (have.size === 0) {
    await connection.run(createTableSql(schema, table, columns))
    return
  }
  // The stream's types as DuckDB names them in its catalog (TIMESTAMPTZ is "TIMESTAMP WITH TIME ZONE").
  const canonical = await connection.runAndReadAll(`SELECT ${columns.map((column, index) => `typeof(CAST(NULL AS ${column.type})) AS t${index}`).join(', ')}`)
  const types = Object.values(canonical.getRowObjectsJS()[0] ?? {}).map(String)
  const drifts: ColumnDrift[] = []
  for (const [index, column] of columns.entries()) {
    const bronzeType = have.get(column.name)
    const sourceType = types[index] as string
    if (bronzeType === undefined) {
      await connection.run(`ALTER TABLE ${qualifiedName(schema, table)} ADD COLUMN ${quoteIdent(column.name)} ${column.type}`)
    } else if (bronzeType !== sourceType && !HOLDS[bronzeType]?.includes(sourceType)) {
      drifts.push({ column: column.name, bronzeType, sourceType })
    }
  }
  if (drifts.length > 0) {
    throw new SchemaDriftError(
      `${schema}.${table}: ${drifts.map((drift) => `"${drift.column}" is ${drift.bronzeType} in DuckDB and ${drift.sourceType} in the stream`).join('; ')}. ` +
        `Nothing was written: alter the DuckDB column, cast in a query source, or rebuild the table with mode 'replace'`,
      drifts,
      { context: { schema, table } },
    )
  }
}
