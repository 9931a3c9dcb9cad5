import { describe, expect, it } from 'vitest'
import {
  cdcSource,
  ensurePublication,
  ensureSlot,
  lsnFromText,
  slotStatus,
  type ChangeBatch,
  type CdcSourceOptions,
  type CommittedTransaction,
} from '../src/cdc.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('cdcsource')

/** Reads batches until `enough` says so (or 20 s pass), acknowledging them unless told not to. */
async function read(
  options: Omit<CdcSourceOptions, 'signal'>,
  enough: (transactions: CommittedTransaction[]) => boolean,
  acknowledge = true,
): Promise<{ batches: ChangeBatch[]; transactions: CommittedTransaction[]; skipped: number }> {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), 20_000)
  const source = cdcSource(db.source, { maxBatchMs: 50, ...options, signal: controller.signal })
  const batches: ChangeBatch[] = []
  const transactions: CommittedTransaction[] = []
  try {
    for await (const batch of source) {
      batches.push(batch)
      transactions.push(...batch.transactions)
      if (acknowledge) batch.acknowledge()
      if (enough(transactions)) break
    }
  } finally {
    clearTimeout(timer)
    await source.close()
  }
  return { batches, transactions, skipped: source.skippedTransactions }
}

const ids = (transaction: CommittedTransaction | undefined) =>
  transaction?.changes.map((change) => (change.kind === 'row' ? Number(change.newTuple?.[0]) : -1)) ?? []

describe('cdcSource', () => {
  it('delivers a large transaction streamed in parts once, at its commit, without its rolled-back savepoint; an aborted one never', async () => {
    // A small decoding memory for this database's walsenders: large transactions go out in parts.
    await db.sourceSql(`alter database ${db.sourceDatabase} set logical_decoding_work_mem = '64kB'`)
    await db.sourceSql(`create table big (id int primary key, pad text)`)
    await ensurePublication(db.source, 'pub_big', [{ table: 'big' }])
    await ensureSlot(db.source, 'slot_big')
    const client = await clientFor(db.sourceUrl)
    try {
      await client.query('begin')
      await client.query(`insert into big select g, repeat('p', 200) from generate_series(1, 3000) g`)
      await client.query('savepoint undone')
      await client.query(`insert into big select g, repeat('u', 200) from generate_series(10001, 12000) g`)
      await client.query('rollback to savepoint undone')
      await client.query(`insert into big select g, repeat('q', 200) from generate_series(3001, 4000) g`)
      await client.query('commit')
      await client.query('begin')
      await client.query(`insert into big select g, repeat('x', 200) from generate_series(20001, 25000) g`)
      await client.query('rollback')
      await client.query(`insert into big values (0, 'last')`)
    } finally {
      await client.end()
    }
    const { transactions } = await read({ slot: 'slot_big', publication: 'pub_big' }, (seen) => seen.some((transaction) => ids(transaction)[0] === 0))
    expect(transactions).toHaveLength(2)
    const [large, last] = transactions
    expect(large?.streamed).toBe(true)
    expect(ids(large)).toEqual(Array.from({ length: 4000 }, (_, index) => index + 1))
    expect(last?.streamed).toBe(false)
    expect(ids(last)).toEqual([0])
    // Without streaming the same kind of transaction arrives whole at its commit.
    await db.sourceSql(`insert into big select g, 'w' from generate_series(30001, 33000) g`)
    const whole = await read({ slot: 'slot_big', publication: 'pub_big', streaming: false }, (seen) => seen.length > 0)
    expect(whole.transactions[0]?.streamed).toBe(false)
    expect(whole.transactions[0]?.changeCount).toBe(3000)
  })

  it('moves the slot only when a batch is acknowledged, and skips what the consumer already holds (startAfter)', async () => {
    await db.sourceSql(`create table acked (id int primary key)`)
    await ensurePublication(db.source, 'pub_acked', [{ table: 'acked' }])
    await ensureSlot(db.source, 'slot_acked')
    const before = (await slotStatus(db.source, 'slot_acked'))?.confirmedFlushLsn
    await db.sourceSql(`insert into acked values (1)`)
    await db.sourceSql(`insert into acked values (2)`)
    const unacknowledged = await read({ slot: 'slot_acked', publication: 'pub_acked' }, (seen) => seen.length >= 2, false)
    expect(unacknowledged.transactions.map(ids)).toEqual([[1], [2]])
    expect((await slotStatus(db.source, 'slot_acked'))?.confirmedFlushLsn).toBe(before)

    // Resent; the consumer says it holds the first one.
    await db.sourceSql(`insert into acked values (3)`)
    const first = unacknowledged.transactions[0]?.endLsn.text as string
    const resumed = await read({ slot: 'slot_acked', publication: 'pub_acked', startAfter: first }, (seen) => seen.length >= 2)
    expect(resumed.skipped).toBe(1)
    expect(resumed.transactions.map(ids)).toEqual([[2], [3]])
    const end = resumed.batches.at(-1)?.lastCommitEndLsn as string
    let confirmed = ''
    for (let attempt = 0; attempt < 50 && confirmed !== end; attempt++) {
      confirmed = (await slotStatus(db.source, 'slot_acked'))?.confirmedFlushLsn ?? ''
      if (confirmed !== end) await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(confirmed).toBe(end)
    expect(lsnFromText(end).value).toBeGreaterThan(lsnFromText(before ?? '0/0').value)
  })
})
