import { adminQuery } from './databases.js'

/**
 * An order-independent checksum of some columns of a table: row count and the sum of a hash of each row's
 * text form. Equal on both sides means the same multiset of rows (up to a hash collision).
 */
export async function checksum(database: string, table: string, columns: string[]): Promise<{ rows: number; sum: string }> {
  const row = `row(${columns.map((column) => `"${column}"`).join(', ')})::text`
  const { rows } = await adminQuery<{ rows: number; sum: string }>(
    `select count(*)::int as rows, coalesce(sum(hashtextextended(${row}, 0)::numeric), 0)::text as sum from ${table}`,
    [],
    database,
  )
  return rows[0] as { rows: number; sum: string }
}
