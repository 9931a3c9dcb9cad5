import { DuckDBInstance } from '@duckdb/node-api'

/** Runs a query in a fresh DuckDB (a file, or :memory: for Parquet) and returns its rows as JS values. */
export async function duckdbRows(path: string, sql: string): Promise<Record<string, unknown>[]> {
  const instance = await DuckDBInstance.create(path)
  try {
    const connection = await instance.connect()
    try {
      await connection.run(`SET TimeZone = 'UTC'`)
      return (await connection.runAndReadAll(sql)).getRowObjectsJS()
    } finally {
      connection.closeSync()
    }
  } finally {
    instance.closeSync()
  }
}
