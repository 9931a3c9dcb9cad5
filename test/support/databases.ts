import { randomBytes } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import { inject } from 'vitest'

/** The superuser URL of the test server. */
export function serverUrl(): string {
  return inject('postgresUrl')
}

/** Runs SQL as the superuser on a database of the test server (the `postgres` one by default). */
export async function adminQuery<R extends pg.QueryResultRow = Record<string, unknown>>(
  text: string,
  values: unknown[] = [],
  database = 'postgres',
): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({ connectionString: withDatabase(serverUrl(), database) })
  await client.connect()
  try {
    return await client.query<R>(text, values)
  } finally {
    await client.end()
  }
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/** A new empty database for one test file; returns its name and URL. Dropped by `drop()`. */
export async function createDatabase(prefix: string): Promise<{ name: string; url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`
  await adminQuery(`create database "${name}"`)
  return {
    name,
    url: withDatabase(serverUrl(), name),
    drop: async () => {
      await adminQuery(`drop database if exists "${name}" with (force)`)
    },
  }
}

/** A client on a test database, closed by the caller. */
export async function clientFor(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  return client
}

/**
 * Two-way EXCEPT between a source table (in one database) and a bronze table (in another), compared on the
 * source's columns. Rows are moved as their text form, so equality is PostgreSQL's own, type by type.
 */
export async function tablesEqual(
  sourceUrl: string,
  sourceTable: string,
  targetUrl: string,
  targetTable: string,
  columns: string[],
): Promise<{ missing: number; extra: number; sourceRows: number; targetRows: number }> {
  const source = await clientFor(sourceUrl)
  const target = await clientFor(targetUrl)
  try {
    const asText = columns.map((column) => `"${column.replace(/"/g, '""')}"::text`).join(', ')
    // Both sides as PostgreSQL's own text output: stricter than `=` (it sees -0 vs 0, 1.10 vs 1.1, key order in json).
    await target.query('begin')
    await target.query(`create temp table expected (${columns.map((_, index) => `c${index} text`).join(', ')})`)
    await pipeline(source.query(copyTo(`copy (select ${asText} from ${sourceTable}) to stdout`)), target.query(copyFrom('copy expected from stdin')))
    const sourceRows = Number((await target.query('select count(*) as n from expected')).rows[0].n)
    const projected = `select ${columns.map((column) => `"${column.replace(/"/g, '""')}"::text`).join(', ')} from ${targetTable}`
    const missing = await target.query(`select count(*)::int as n from (select * from expected except all ${projected}) d`)
    const extra = await target.query(`select count(*)::int as n from (${projected} except all select * from expected) d`)
    const count = await target.query(`select count(*)::int as n from ${targetTable}`)
    await target.query('rollback')
    return {
      missing: missing.rows[0].n,
      extra: extra.rows[0].n,
      sourceRows,
      targetRows: count.rows[0].n,
    }
  } finally {
    await source.end()
    await target.end()
  }
}
