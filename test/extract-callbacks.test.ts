import { describe, expect, it } from 'vitest'
import { ConnectionLostError, extract, postgresSink, tableSource, type Transform } from '../src/index.js'
import { useDatabases } from './support/fixtures.js'
import { capturingLogger } from './support/logger.js'
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

  it('waits for the final event of an async onProgress; its failure after the commit is logged, the run succeeds once', async () => {
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

    // The rows are committed when the final event fails: reporting the run failed would invite a re-run (here, with
    // append and an error extract() retries, its own retry) that loads them twice.
    await db.warehouseSql('drop table if exists bronze.br_cb_small')
    const logger = capturingLogger()
    let attempts = 0
    const outcome = await extract({
      from: tableSource(db.source, { table: 'cb_small' }),
      to: postgresSink(db.warehouse, { mode: 'append' }),
      retry: { attempts: 3, initialDelayMs: 1 },
      logger,
      onProgress: async (progress) => {
        await sleep(1)
        if (progress.final) {
          attempts++
          throw new ConnectionLostError('the metrics endpoint went away', { step: 'pipeline' })
        }
      },
    }).then(
      (report) => ({ report }),
      (error: unknown) => ({ error }),
    )
    expect(outcome).toMatchObject({ report: { rows: 10 } })
    expect(attempts).toBe(1)
    expect(await db.warehouseSql('select count(*)::int as n from bronze.br_cb_small')).toEqual([{ n: 10 }])
    expect(logger.lines.map((line) => line.message)).toContain('onProgress failed after the rows were committed; the run succeeded')
    await sleep(50)
    expect(unhandled).toEqual([])
  })
})
