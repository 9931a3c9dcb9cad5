/**
 * Quickstart: extract a demo table into bronze.br_orders and print the run report.
 *
 *   npm run quickstart
 *
 * Uses SOURCE_DATABASE_URL when set; otherwise it starts a throwaway PostgreSQL from the installed server binaries (or
 * Docker) and removes it afterwards. With WAREHOUSE_DATABASE_URL set, bronze is that PostgreSQL database; without it,
 * the embedded default: a DuckDB file, quickstart.duckdb (needs the optional @duckdb/node-api).
 */
import { bronzeMetadata, connect, extract, postgresSink, tableSource, type Sink } from 'pg-datakit'
import { startTestPostgres } from 'pg-datakit/testing'

const throwaway = process.env.SOURCE_DATABASE_URL ? undefined : await startTestPostgres({ urlVariable: 'SOURCE_DATABASE_URL' })
const sourceUrl = process.env.SOURCE_DATABASE_URL ?? (throwaway as { url: string }).url
const source = connect(sourceUrl)
const warehouse = process.env.WAREHOUSE_DATABASE_URL ? connect(process.env.WAREHOUSE_DATABASE_URL) : undefined
const duckdbPath = process.env.QUICKSTART_DUCKDB ?? 'quickstart.duckdb'
// Loaded only when used: the DuckDB sink needs the optional peer dependency @duckdb/node-api.
const to: Sink = warehouse
  ? postgresSink(warehouse, { mode: 'replace' })
  : (await import('pg-datakit/duckdb')).duckdbSink({ path: duckdbPath, mode: 'replace' })

try {
  // A demo table: 100 000 orders with a few kinds of values.
  await source.query(`create table if not exists public.demo_orders (
    id bigint primary key, customer text not null, total numeric(12,2), tags text[], placed_at timestamptz)`)
  await source.query(`insert into public.demo_orders
    select g, 'customer ' || (g % 1000), round((random() * 1000)::numeric, 2), array['web', 'eu'],
           now() - g * interval '1 minute'
      from generate_series(1, 100000) g
    on conflict (id) do nothing`)
  // Fresh statistics give progress events a total, so a percent and an ETA.
  await source.query('analyze public.demo_orders')

  const report = await extract({
    from: tableSource(source, { table: 'demo_orders' }),
    through: [bronzeMetadata()],
    to, // bronze.br_demo_orders
    onProgress: (p) => {
      const line = `${p.rows} rows${p.percent === undefined ? '' : ` (${p.percent}%)`}, ${p.rowsPerSecond} rows/s`
      // On a terminal one line rewritten in place; in a log or a pipe, a line per event (a `\r` line would be one long line).
      if (process.stdout.isTTY) process.stdout.write(`\r${line}${p.final ? '\n' : ''}`)
      else console.log(line)
    },
  })
  console.log(JSON.stringify(report, null, 2))
  if (warehouse) {
    const { rows } = await warehouse.query('select count(*) as rows from bronze.br_demo_orders')
    console.log(`bronze.br_demo_orders now holds ${String(rows[0]?.rows)} rows`)
  } else {
    const { DuckDBInstance } = await import('@duckdb/node-api')
    const duckdb = await DuckDBInstance.create(duckdbPath)
    const connection = await duckdb.connect()
    const query = `SELECT customer, count(*) AS orders, sum(total) AS total FROM bronze.br_demo_orders GROUP BY customer ORDER BY total DESC LIMIT 5`
    console.log(`${duckdbPath}: ${query}`)
    console.table((await connection.runAndReadAll(query)).getRowObjectsJson())
    connection.closeSync()
    duckdb.closeSync()
  }
} finally {
  await source.close()
  await warehouse?.close()
  await throwaway?.stop()
}
