import { describe, expect, it } from 'vitest'
import { extract, postgresSink, tableSource, type Transform } from '../src/index.js'
import { useDatabases } from './support/fixtures.js'
import { watchUnhandled } from './support/unhandled.js'

// An `async` onProgress: a rejection that nobody handles ends a Node process (unhandled rejection), so the run fails
// with it instead, as when onProgress throws.
const db = useDatabases('extract_callbacks')

const unhandled = watchUnhandled().reasons

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Holds each batch a little, so that a run of many batches gives many progress events. */
const slow: Transform = {
  name: 'slow',
  shape: (shape) => shape,
  async *apply(batches) {
    for await (const batch of batches) {
      await sleep(20)
      yield batch
    }
  },
}

async function bronzeRows(table: string): Promise<number | null> {
  const [row] = await db.warehouseSql(`select to_regclass($1) is not null as present`, [`bronze.br_${table}`])
  if (!row?.present) return null
  const [count] = await db.warehouseSql(`select count(*)::int as n from bronze.br_${table}`)
  return count?.n as number
}

describe('extract with an async onProgress', () => {
  it('fails the run with the error of an onProgress that rejects mid-run, leaves bronze as it was and no unhandled rejection', async () => {
    await db.sourceSql('create table cb_events (id int primary key)')
    await db.sourceSql('insert into cb_events select generate_series(1, 3000)')
    let calls = 0
    const outcome = await extract({
      from: tableSource(db.source, { table: 'cb_events', batchSize: 100 }),
      through: [slow],
      to: postgresSink(db.warehouse, { mode: 'replace' }),
      retry: false,
      onProgress: async () => {
        calls++
        await sleep(1)
        throw new Error('the metrics endpoint is down')
      },
    }).then(
      (report) => ({ report }),
      (error: unknown) => ({ error }),
    )
    expect(outcome).toMatchObject({ error: { message: expect.stringContaining('the metrics endpoint is down') } })
    // It failed at the event after the first one, not at the end.
    expect(calls).toBe(1)
    expect(await bronzeRows('cb_events')).toBeNull()
    await sleep(50)
    expect(unhandled).toEqual([])
  })

  it('waits for the final event of an async onProgress, and fails the run if it rejects', async () => {
    await db.sourceSql('create table cb_small (id int primary key)')
    await db.sourceSql('insert into cb_small select generate_series(1, 10)')
    let finished = false
    const report = await extract({
      from: tableSource(db.source, { table: 'cb_small' }),
      to: postgresSink(db.warehouse, { mode: 'replace' }),
      onProgress: async (progress) => {
        if (!progress.final) return
        await sleep(100)
        finished = true
      },
    })
    expect(report.rows).toBe(10)
    expect(finished).toBe(true)

    const outcome = await extract({
      from: tableSource(db.source, { table: 'cb_small' }),
      to: postgresSink(db.warehouse, { mode: 'replace' }),
      retry: false,
      onProgress: async (progress) => {
        await sleep(1)
        if (progress.final) throw new Error('could not record the run')
      },
    }).then(
      (report) => ({ report }),
      (error: unknown) => ({ error }),
    )
    expect(outcome).toMatchObject({ error: { message: expect.stringContaining('could not record the run') } })
    await sleep(50)
    expect(unhandled).toEqual([])
  })
})
