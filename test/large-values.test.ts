import { describe, expect, it } from 'vitest'
import { ConfigError, copySource, extract, postgresSink, tableSource, type Transform } from '../src/index.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('large')

/** Records how many bytes of `column` each batch held. */
function batchBytes(column: string, sizes: number[]): Transform {
  return {
    name: 'batchBytes',
    shape: (shape) => shape,
    async *apply(batches) {
      for await (const batch of batches) {
        sizes.push(batch.rows.reduce((sum, row) => sum + ((row[column] as Buffer | null)?.length ?? 0), 0))
        yield batch
      }
    },
  }
}

describe('large values', () => {
  it('keeps batches of big bytea rows within the byte budget, on the cursor and the COPY paths', async () => {
    // 40 rows of 512 KiB each: 20 MiB in all, which the default 1,000-row batch would hold at once.
    await db.sourceSql(`create table blobs (id int primary key, payload bytea)`)
    await db.sourceSql(`insert into blobs select g, decode(repeat(md5(g::text), 32768), 'hex') from generate_series(1, 40) g`)
    for (const [name, source] of [
      ['cursor', tableSource(db.source, { table: 'blobs', maxBatchBytes: 4 * 1024 * 1024 })],
      ['copy', copySource(db.source, { table: 'blobs', maxBatchBytes: 4 * 1024 * 1024 })],
    ] as const) {
      const sizes: number[] = []
      const report = await extract({ from: source, through: [batchBytes('payload', sizes)], to: postgresSink(db.warehouse, { table: `blobs_${name}` }) })
      expect(report.rows).toBe(40)
      // No batch holds more than the budget plus the one row that crossed it.
      expect(sizes.length).toBeGreaterThanOrEqual(5)
      expect(Math.max(...sizes)).toBeLessThanOrEqual(4 * 1024 * 1024 + 512 * 1024)
      const [source_] = await db.sourceSql(`select md5(string_agg(md5(payload), ',' order by id)) as digest from blobs`)
      const [target] = await db.warehouseSql(`select md5(string_agg(md5(payload), ',' order by id)) as digest from bronze.blobs_${name}`)
      expect(target).toEqual(source_)
    }
  })

  it('reads large objects by their oid column as bytea', async () => {
    await db.sourceSql(`create table documents (id int primary key, title text, body oid)`)
    await db.sourceSql(
      `insert into documents select g, 'doc ' || g, lo_from_bytea(0, decode(repeat(md5(g::text), 16384 * g), 'hex')) from generate_series(1, 5) g`,
    )
    await db.sourceSql(`insert into documents values (6, 'no body', null)`)
    for (const [name, source] of [
      ['cursor', tableSource(db.source, { table: 'documents', largeObjects: ['body'], maxBatchBytes: 1024 * 1024 })],
      ['copy', copySource(db.source, { table: 'documents', largeObjects: ['body'] })],
    ] as const) {
      await extract({ from: source, to: postgresSink(db.warehouse, { table: `documents_${name}` }) })
      const expected = await db.sourceSql(`select id, md5(lo_get(body)) as digest, length(lo_get(body)) as size from documents order by id`)
      const landed = await db.warehouseSql(
        `select id, md5(body) as digest, length(body) as size, pg_typeof(body)::text as type from bronze.documents_${name} order by id`,
      )
      expect(landed.map(({ type: _type, ...row }) => row)).toEqual(expected)
      expect(landed[0]?.type).toBe('bytea')
      expect(landed[4]?.size).toBe(5 * 16384 * 16)
    }
  })

  it('refuses a large-object column that is not an oid', async () => {
    await expect(
      extract({ from: tableSource(db.source, { table: 'documents', largeObjects: ['title'] }), to: postgresSink(db.warehouse) }),
    ).rejects.toBeInstanceOf(ConfigError)
  })
})
