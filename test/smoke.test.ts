import { afterAll, beforeAll, expect, it } from 'vitest'
import { bronzeMetadata, connect, extract, postgresSink, tableSource } from '../src/index.js'
import { adminQuery, createDatabase } from './support/databases.js'

let db: Awaited<ReturnType<typeof createDatabase>>
beforeAll(async () => {
  db = await createDatabase('smoke')
  await adminQuery(`create table orders (id int primary key, total numeric(12,2), note text)`, [], db.name)
  await adminQuery(`insert into orders select g, g * 1.5, 'n' || g from generate_series(1, 1000) g`, [], db.name)
})
afterAll(() => db.drop())

it('extracts a table into bronze', async () => {
  const conn = connect(db.url)
  try {
    const report = await extract({ from: tableSource(conn, { table: 'orders' }), through: [bronzeMetadata()], to: postgresSink(conn) })
    expect(report.rows).toBe(1000)
    const { rows } = await conn.query<{ n: bigint }>('select count(*) as n from bronze.br_orders')
    expect(rows[0]?.n).toBe(1000n)
  } finally {
    await conn.close()
  }
})
