import { describe, expect, it } from 'vitest'
import { captureChanges } from '../src/index.js'
import { ensurePublication, ensureSlot } from '../src/cdc.js'
import { useDatabases } from './support/fixtures.js'
import { watchUnhandled } from './support/unhandled.js'

// Callbacks written as `async` functions: a rejection that nobody handles ends a Node process (unhandled rejection),
// so the capture awaits what they return and stops with their error, as when they throw.
const db = useDatabases('capture_callbacks')

const unhandled = watchUnhandled().reasons

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('captureChanges with async callbacks', () => {
  it('stops with the error of an async onBatch that rejects, and leaves no unhandled rejection', async () => {
    await db.sourceSql('create table cb_items (id int primary key)')
    await ensurePublication(db.source, 'cb_pub_batch', [{ table: 'cb_items' }])
    await ensureSlot(db.source, 'cb_slot_batch')
    await db.sourceSql('insert into cb_items select generate_series(1, 5)')
    const controller = new AbortController()
    const safety = setTimeout(() => controller.abort(), 15_000)
    let failedAt = 0
    const outcome = await captureChanges(db.source, {
      slot: 'cb_slot_batch',
      publication: 'cb_pub_batch',
      to: db.warehouse,
      maxBatchMs: 50,
      signal: controller.signal,
      onBatch: async () => {
        await sleep(10)
        failedAt = Date.now()
        throw new Error('the dashboard is down')
      },
    }).then(
      (report) => ({ report }),
      (error: unknown) => ({ error }),
    )
    clearTimeout(safety)
    // At once, not when the next batch (or the idle position, 10 s later on this quiet source) comes.
    expect(Date.now() - failedAt).toBeLessThan(3_000)
    // Reported as the capture reports a callback that throws: a DatakitError whose cause is the callback's error.
    expect(outcome).toMatchObject({ error: { cause: new Error('the dashboard is down') } })
    // The batch itself was durable before the callback ran.
    expect(await db.warehouseSql(`select count(*)::int as n from bronze.cdc_changes where table_name = 'cb_items'`)).toEqual([{ n: 5 }])
    await sleep(50)
    expect(unhandled).toEqual([])
  })

  it('waits for an async onBatch before it writes the next batch', async () => {
    await db.sourceSql('create table cb_orders (id int primary key)')
    await ensurePublication(db.source, 'cb_pub_wait', [{ table: 'cb_orders' }])
    await ensureSlot(db.source, 'cb_slot_wait')
    // Three transactions, each its own batch at maxBatchChanges 1.
    for (let id = 1; id <= 3; id++) await db.sourceSql(`insert into cb_orders values (${id})`)
    const controller = new AbortController()
    const safety = setTimeout(() => controller.abort(), 15_000)
    let running = 0
    let most = 0
    let landed = 0
    const seenInWarehouse: number[] = []
    await captureChanges(db.source, {
      slot: 'cb_slot_wait',
      publication: 'cb_pub_wait',
      to: db.warehouse,
      maxBatchMs: 10,
      maxBatchChanges: 1,
      signal: controller.signal,
      onBatch: async (batch) => {
        most = Math.max(most, ++running)
        // While this callback waits, no later batch may land.
        const [row] = await db.warehouseSql(`select count(*)::int as n from bronze.cdc_changes where table_name = 'cb_orders'`)
        await sleep(150)
        const [after] = await db.warehouseSql(`select count(*)::int as n from bronze.cdc_changes where table_name = 'cb_orders'`)
        expect(after).toEqual(row)
        seenInWarehouse.push(row?.n as number)
        running--
        landed += batch.changes
        if (landed >= 3) controller.abort()
      },
    })
    clearTimeout(safety)
    expect(most).toBe(1)
    expect(seenInWarehouse).toEqual([1, 2, 3])
    expect(unhandled).toEqual([])
  })

  it('stops with the error of an async onSnapshot that rejects, before any change streams', async () => {
    await db.sourceSql('create table cb_stock (id int primary key)')
    await db.sourceSql('insert into cb_stock select generate_series(1, 10)')
    await ensurePublication(db.source, 'cb_pub_snapshot', [{ table: 'cb_stock' }])
    const controller = new AbortController()
    const safety = setTimeout(() => controller.abort(), 15_000)
    let batches = 0
    const outcome = await captureChanges(db.source, {
      slot: 'cb_slot_snapshot',
      publication: 'cb_pub_snapshot',
      to: db.warehouse,
      initialSnapshot: true,
      maxBatchMs: 50,
      signal: controller.signal,
      onSnapshot: async () => {
        await sleep(10)
        throw new Error('could not announce the snapshot')
      },
      onBatch: () => batches++,
    }).then(
      (report) => ({ report }),
      (error: unknown) => ({ error }),
    )
    clearTimeout(safety)
    expect(outcome).toMatchObject({ error: { cause: new Error('could not announce the snapshot') } })
    expect(batches).toBe(0)
    await sleep(50)
    expect(unhandled).toEqual([])
  })
})
