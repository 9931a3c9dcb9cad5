import { describe, expect, it } from 'vitest'
import { captureChanges, type CaptureReport } from '../src/index.js'
import { ensurePublication } from '../src/cdc.js'
import { checksum } from './support/checksum.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('spill')

/** Captures with apply and tiny memory bounds until `changes` landed. */
async function captureSpilling(slot: string, publication: string, changes: number, streaming: boolean): Promise<CaptureReport> {
  const controller = new AbortController()
  let landed = 0
  const timer = setTimeout(() => controller.abort(), 120_000)
  try {
    return await captureChanges(db.source, {
      slot,
      publication,
      to: db.warehouse,
      apply: true,
      streaming,
      spill: { spillAfterChanges: 500, spillAfterBytes: 1 << 30 },
      maxBatchMs: 50,
      signal: controller.signal,
      onBatch: (batch) => {
        landed += batch.changes
        if (landed >= changes) controller.abort()
      },
    })
  } finally {
    clearTimeout(timer)
  }
}

describe('a transaction larger than the memory bounds', () => {
  for (const streaming of [true, false]) {
    it(`waits on disk and lands whole, once, in order, without its rolled-back savepoint (${streaming ? 'streamed in parts' : 'sent at commit'})`, async () => {
      const table = `spilled_${streaming ? 'streamed' : 'whole'}`
      const slot = `${table}_slot`
      await db.sourceSql(`create table ${table} (id int primary key, qty int, note text)`)
      await db.sourceSql(`create table ${table}_other (id int primary key)`)
      await ensurePublication(db.source, `${table}_pub`, [{ table }, { table: `${table}_other` }])
      // The walsender sends a transaction in parts once it outgrows logical_decoding_work_mem.
      if (streaming) await db.sourceSql(`alter database "${db.sourceDatabase}" set logical_decoding_work_mem = '64kB'`)
      try {
        // Start the slot, then the large transaction, an aborted one, and a small one after.
        await captureSpilling(slot, `${table}_pub`, 0, streaming)
        await db.sourceSql(`begin;
          insert into ${table} select g, 0, 'first' from generate_series(1, 20000) g;
          savepoint a;
          update ${table} set qty = -1 where id <= 5000;
          insert into ${table}_other select generate_series(1, 700);
          rollback to savepoint a;
          savepoint b;
          update ${table} set qty = qty + 1, note = 'kept' where id % 7 = 0;
          release savepoint b;
          delete from ${table} where id > 19000;
          insert into ${table}_other values (1);
          commit`)
        await db.sourceSql(`begin; insert into ${table}_other select generate_series(1000, 3000); rollback`)
        await db.sourceSql(`insert into ${table}_other values (2)`)
        const kept = 20000 + Math.floor(20000 / 7) + 1000 + 1
        const report = await captureSpilling(slot, `${table}_pub`, kept + 1, streaming)
        expect(report.spilledTransactions).toBe(1)
        const stats = await db.sourceSql(`select stream_txns::int as streamed from pg_stat_replication_slots where slot_name = $1`, [slot])
        if (streaming) expect(stats[0]?.streamed).toBeGreaterThan(0)
        else expect(stats[0]?.streamed ?? 0).toBe(0)
        expect(report.changes).toBe(kept + 1)
        const log = await db.warehouseSql(
          `select count(*)::int as changes, count(distinct seq)::int as seqs, max(seq)::int as last, count(*) filter (where operation = 'delete')::int as deletes
             from bronze.cdc_changes where table_name in ($1, $2) group by xid order by 1 desc`,
          [table, `${table}_other`],
        )
        expect(log).toEqual([
          { changes: kept, seqs: kept, last: kept - 1, deletes: 1000 },
          { changes: 1, seqs: 1, last: 0, deletes: 0 },
        ])
        // In order: each change's LSN is at or after the one before it in the transaction.
        const order = await db.warehouseSql(
          `select count(*)::int as backwards from (select lsn < lag(lsn) over (partition by xid order by seq) as back from bronze.cdc_changes where table_name in ($1, $2)) s where back`,
          [table, `${table}_other`],
        )
        expect(order).toEqual([{ backwards: 0 }])
        for (const name of [table, `${table}_other`]) {
          const columns = name === table ? ['id', 'qty', 'note'] : ['id']
          expect(await checksum(db.warehouseDatabase, `bronze.br_${name}`, columns)).toEqual(await checksum(db.sourceDatabase, name, columns))
        }
      } finally {
        if (streaming) await db.sourceSql(`alter database "${db.sourceDatabase}" reset logical_decoding_work_mem`)
      }
    })
  }
})
