/**
 * Change data capture: snapshot a table into bronze.br_demo_accounts, then stream its changes into
 * bronze.cdc_changes and keep the bronze table in step, until Ctrl-C.
 *
 *   npx tsx examples/cdc.ts
 *
 * Uses SOURCE_DATABASE_URL (its server needs wal_level = logical) and WAREHOUSE_DATABASE_URL (defaulting to the
 * source); otherwise it starts a throwaway PostgreSQL (wal_level = logical) and stops after a few seconds of demo
 * writes.
 */
import { captureChanges, connect } from 'pg-datakit'
import { dropSlot, ensurePublication } from 'pg-datakit/cdc'
import { startTestPostgres } from 'pg-datakit/testing'

const throwaway = process.env.SOURCE_DATABASE_URL ? undefined : await startTestPostgres({ urlVariable: 'SOURCE_DATABASE_URL' })
const sourceUrl = process.env.SOURCE_DATABASE_URL ?? (throwaway as { url: string }).url
const source = connect(sourceUrl)
const warehouse = connect(process.env.WAREHOUSE_DATABASE_URL ?? sourceUrl)
const controller = new AbortController()
process.once('SIGINT', () => controller.abort())

try {
  await source.query(`create table if not exists public.demo_accounts (id int primary key, balance numeric(12,2) not null)`)
  await source.query(`insert into public.demo_accounts select g, 0 from generate_series(1, 1000) g on conflict do nothing`)
  await ensurePublication(source, 'demo_accounts_pub', [{ table: 'demo_accounts' }])

  // Demo writes while the capture runs (only against the throwaway server).
  const writes = throwaway
    ? (async () => {
        for (let round = 0; round < 50 && !controller.signal.aborted; round++) {
          await source.query(`update public.demo_accounts set balance = balance + 1 where id = $1`, [1 + (round % 1000)])
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
        setTimeout(() => controller.abort(), 1_000)
      })()
    : undefined

  const report = await captureChanges(source, {
    slot: 'demo_accounts_slot',
    publication: 'demo_accounts_pub',
    to: warehouse,
    initialSnapshot: true,
    apply: true,
    maxBatchMs: 200,
    signal: controller.signal,
    onSnapshot: (snapshot) => console.log('snapshot', snapshot.tables, 'streaming from', snapshot.consistentPoint),
    onBatch: (batch) => console.log(`${batch.changes} changes in ${batch.transactions} transactions, up to ${batch.lastCommitEndLsn}`),
  })
  await writes
  console.log(report)
} finally {
  if (throwaway) await dropSlot(source, 'demo_accounts_slot')
  await source.close()
  await warehouse.close()
  await throwaway?.stop()
}
