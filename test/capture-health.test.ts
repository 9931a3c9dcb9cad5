import { describe, expect, it } from 'vitest'
import { captureChanges, ConfigError, DatakitError, MissingPublicationError, type CaptureHealth } from '../src/index.js'
import { ensurePublication, lsnFromText, slotStatus } from '../src/cdc.js'
import { captureUntil } from './support/capture.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('health')

/** Runs `body` while a capture streams; returns how the capture ended (its report or its error) and when. */
async function whileCapturing(
  options: { slot: string; publication: string; idlePositionMs?: number; healthIntervalMs?: number; onHealth?: (health: CaptureHealth) => void },
  body: (stop: () => void, ended: Promise<unknown>) => Promise<void>,
): Promise<{ outcome: unknown; endedAt: number }> {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), 60_000)
  let endedAt = 0
  const capture = captureChanges(db.source, { ...options, to: db.warehouse, maxBatchMs: 50, signal: controller.signal }).then(
    (report) => report,
    (error: unknown) => error,
  )
  const ended = capture.then((outcome) => {
    endedAt = Date.now()
    return outcome
  })
  try {
    await body(() => controller.abort(), ended)
    return { outcome: await ended, endedAt }
  } finally {
    controller.abort()
    clearTimeout(timer)
    await capture
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Waits until a capture streams from the slot: a change committed before the slot reached its consistent point is not
 * sent. While the slot is still being made it already shows as active, but without a confirmed_flush_lsn: creating
 * a logical slot waits for every transaction running in the cluster (other test files' included) to end.
 */
async function slotActive(slot: string): Promise<void> {
  for (const until = Date.now() + 60_000; Date.now() < until; await sleep(100)) {
    const status = await slotStatus(db.source, slot)
    if (status?.active && status.confirmedFlushLsn !== null) return
  }
  throw new Error(`slot ${slot} was not streaming after 60 s`)
}

describe('a capture looks after its slot', () => {
  it('moves the slot past WAL in which only unpublished tables changed, after the warehouse stored the position', async () => {
    await db.sourceSql('create table watched (id int primary key)')
    await db.sourceSql('create table unwatched (id serial primary key, filler text)')
    await ensurePublication(db.source, 'quiet_pub', [{ table: 'watched' }])
    const healths: CaptureHealth[] = []
    await whileCapturing(
      { slot: 'quiet_slot', publication: 'quiet_pub', idlePositionMs: 200, healthIntervalMs: 300, onHealth: (health) => healths.push(health) },
      async (stop) => {
        await slotActive('quiet_slot')
        const before = lsnFromText((await slotStatus(db.source, 'quiet_slot'))?.confirmedFlushLsn as string).value
        for (let round = 0; round < 20; round++) await db.sourceSql(`insert into unwatched (filler) select repeat('x', 500) from generate_series(1, 500)`)
        const written = lsnFromText((await db.sourceSql(`select pg_current_wal_lsn()::text as lsn`))[0]?.lsn as string).value
        let confirmed = before
        for (let waited = 0; confirmed < written && waited < 20_000; waited += 100) {
          await sleep(100)
          confirmed = lsnFromText((await slotStatus(db.source, 'quiet_slot'))?.confirmedFlushLsn as string).value
        }
        expect(confirmed).toBeGreaterThanOrEqual(written)
        // Never ahead of what the warehouse holds.
        const stored = (await db.warehouseSql(`select last_commit_end_lsn::text as lsn from bronze.cdc_state where slot = 'quiet_slot'`))[0]?.lsn as string
        expect(lsnFromText(stored).value).toBeGreaterThanOrEqual(confirmed)
        stop()
      },
    )
    expect(healths.length).toBeGreaterThan(0)
    expect(healths[0]).toMatchObject({ slot: 'quiet_slot', walStatus: 'reserved' })
    expect(healths[0]?.retainedWalBytes).toBeGreaterThanOrEqual(0)
  })

  it('ends at once with the sink error when a warehouse write fails, without waiting for another change', async () => {
    await db.sourceSql('create table fragile (id int primary key)')
    await ensurePublication(db.source, 'fragile_pub', [{ table: 'fragile' }])
    let failedAt = 0
    const { outcome, endedAt } = await whileCapturing({ slot: 'fragile_slot', publication: 'fragile_pub' }, async (_stop, ended) => {
      // The capture makes its slot: a change before that is not streamed.
      await slotActive('fragile_slot')
      await db.sourceSql('insert into fragile values (1)')
      // Generous for a loaded machine (a full suite beside other work took over 10 s here once).
      for (const until = Date.now() + 30_000; Date.now() < until;) {
        if ((await db.warehouseSql(`select count(*)::int as n from bronze.cdc_changes`))[0]?.n === 1) break
        await sleep(100)
      }
      expect(await db.warehouseSql(`select count(*)::int as n from bronze.cdc_changes`)).toEqual([{ n: 1 }])
      await db.warehouseSql('alter table bronze.cdc_changes rename to cdc_changes_away')
      await db.sourceSql('insert into fragile values (2)')
      failedAt = Date.now()
      // Nothing else is written: a capture that waited for the next batch to notice would run until the 60 s timeout.
      await Promise.race([ended, sleep(15_000)])
    }).finally(() => db.warehouseSql('alter table if exists bronze.cdc_changes_away rename to cdc_changes'))
    expect(outcome).toBeInstanceOf(DatakitError)
    expect(outcome).toMatchObject({ step: 'sink', context: { table: 'cdc_changes' } })
    expect(endedAt - failedAt).toBeLessThan(10_000)
  })

  it('stops with MissingPublicationError when the publication is dropped while it streams', async () => {
    await db.sourceSql('create table orphaned (id int primary key)')
    await ensurePublication(db.source, 'doomed_pub', [{ table: 'orphaned' }])
    const { outcome } = await whileCapturing({ slot: 'doomed_slot', publication: 'doomed_pub' }, async (_stop, ended) => {
      await slotActive('doomed_slot')
      await db.sourceSql('drop publication doomed_pub')
      await db.sourceSql('insert into orphaned values (1)')
      await Promise.race([ended, sleep(20_000)])
    })
    expect(outcome).toBeInstanceOf(MissingPublicationError)
    expect((outcome as Error).message).toMatch(/doomed_pub.*initialSnapshot/s)
    expect((outcome as MissingPublicationError).retryable).toBe(false)
  })

  it('keeps the change logs of two slots apart in one warehouse schema, even for a transaction that changes both publications', async () => {
    await db.sourceSql('create table left_side (id int primary key)')
    await db.sourceSql('create table right_side (id int primary key)')
    await ensurePublication(db.source, 'left_pub', [{ table: 'left_side' }])
    await ensurePublication(db.source, 'right_pub', [{ table: 'right_side' }])
    for (const [slot, publication] of [
      ['left_slot', 'left_pub'],
      ['right_slot', 'right_pub'],
    ] as const) {
      await whileCapturing({ slot, publication }, async (stop) => {
        await slotActive(slot)
        stop()
      })
    }
    await db.sourceSql('begin; insert into left_side select generate_series(1, 3); insert into right_side select generate_series(1, 2); commit')
    for (const [slot, publication, count] of [
      ['left_slot', 'left_pub', 3],
      ['right_slot', 'right_pub', 2],
    ] as const) {
      const { outcome } = await whileCapturing({ slot, publication }, async (stop) => {
        for (const until = Date.now() + 10_000; Date.now() < until;) {
          if ((await db.warehouseSql(`select count(*)::int as n from bronze.cdc_changes where slot = $1`, [slot]))[0]?.n === count) break
          await sleep(100)
        }
        stop()
      })
      expect(outcome).toMatchObject({ changes: count })
    }
    expect(
      await db.warehouseSql(
        `select slot, table_name, count(*)::int as n, count(distinct commit_lsn)::int as commits from bronze.cdc_changes where slot in ('left_slot', 'right_slot') group by 1, 2 order by 1`,
      ),
    ).toEqual([
      { slot: 'left_slot', table_name: 'left_side', n: 3, commits: 1 },
      { slot: 'right_slot', table_name: 'right_side', n: 2, commits: 1 },
    ])
  })

  it('refuses to capture into the source database when the publication publishes the tables it writes', async () => {
    await db.sourceSql('create table selfish (id int primary key)')
    await db.sourceSql('create publication everything_pub for all tables')
    try {
      const error = await captureChanges(db.source, {
        slot: 'selfish_slot',
        publication: 'everything_pub',
        to: db.source,
        schema: 'selfish_bronze',
        signal: AbortSignal.timeout(30_000),
      }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as Error).message).toMatch(/selfish_bronze\.cdc_(changes|state|tables).*own writes/s)
      expect(await slotStatus(db.source, 'selfish_slot')).toBeUndefined()
    } finally {
      await db.sourceSql('drop publication everything_pub')
    }
  })

  it('applies changes of tables whose schema and table names hold dots to their own bronze tables', async () => {
    await db.sourceSql('create schema "a.b"; create schema "a"')
    await db.sourceSql('create table "a.b"."c" (id int primary key, v text); create table "a"."b.c" (id int primary key, v text)')
    await ensurePublication(db.source, 'dotted_pub', [
      { schema: 'a.b', table: 'c' },
      { schema: 'a', table: 'b.c' },
    ])
    await whileCapturing({ slot: 'dotted_slot', publication: 'dotted_pub' }, async (stop) => {
      await slotActive('dotted_slot')
      stop()
    })
    await db.sourceSql(`insert into "a.b"."c" values (1, 'in a.b.c'); insert into "a"."b.c" values (2, 'in a.b.c too')`)
    await captureUntil({ source: db.source, warehouse: db.warehouse, slot: 'dotted_slot', publication: 'dotted_pub', apply: true, changes: 2, firstMs: 30_000 })
    expect(await db.warehouseSql(`select id, v from bronze.br_c`)).toEqual([{ id: 1, v: 'in a.b.c' }])
    expect(await db.warehouseSql(`select id, v from bronze."br_b.c"`)).toEqual([{ id: 2, v: 'in a.b.c too' }])
  })

  it('refuses, before anything streams, a published table whose bronze name would pass 63 bytes', async () => {
    const long = 't'.repeat(61)
    await db.sourceSql(`create table ${long} (id int primary key)`)
    await ensurePublication(db.source, 'long_pub', [{ table: long }])
    const error = await captureChanges(db.source, {
      slot: 'long_slot',
      publication: 'long_pub',
      to: db.warehouse,
      apply: true,
      signal: AbortSignal.timeout(30_000),
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as Error).message).toContain(`public.${long}`)
    expect(await slotStatus(db.source, 'long_slot')).toBeUndefined()
  })
})
