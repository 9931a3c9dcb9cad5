/** A SQL string literal for DuckDB: single quotes doubled (DuckDB, like PostgreSQL, reads backslashes literally). */
export function sqlString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`
}
