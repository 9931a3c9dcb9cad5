import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { extract, incrementalSource, postgresSink } from '../src/index.js'
import { clientFor, tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'
import { runUntilKilled } from './support/run-until-killed.js'
import { seededRandom } from './support/random.js'

const db = useDatabases('incrnd')
const CHILD = fileURLToPath(new URL('./support/incremental-random-child.ts', import.meta.url))
const COLUMNS = ['id', 'note', 'c', 'v']

/** What the writers did, so the test can insist that the hard cases happened. */
interface Tally {
  transactions: number
  rolledBack: number
  savepoints: number
  exceptionBlocks: number
  lateXids: number
  nullCursors: number
  backdated: number
}

/**
 * A writer: random transactions until `stop()`, each a few of: inserts and updates stamped with now(), the clock, a
 * time up to ten minutes back, or NULL; writes inside savepoints released or rolled back; PL/pgSQL EXCEPTION blocks
 * that sometimes raise; a transaction that fixes its now() and waits before taking an xid; pauses that keep a
 * transaction open across runs; one in ten rolled back.
 */
async function writer(url: string, table: string, seed: number, tally: Tally, stopped: () => boolean): Promise<void> {
  const next = seededRandom(seed)
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T
  const client = await clientFor(url)
  const stamp = () => {
    const choice = pick(['now()', 'clock_timestamp()', 'back', 'null'] as const)
    if (choice === 'null') tally.nullCursors++
    if (choice === 'back') tally.backdated++
    return choice === 'back' ? `now() - interval '10 minutes' * random()` : choice
  }
  const write = () =>
    next() < 0.6
      ? `insert into ${table} (note, c) values ('w${seed}', ${stamp()})`
      : `update ${table} set note = 'u${seed}', v = gen_random_uuid(), c = ${stamp()}
          where id = (select floor(random() * (select coalesce(max(id), 1) from ${table}))::int + 1)`
  try {
    while (!stopped()) {
      await client.query('begin')
      if (next() < 0.2) {
        // Fix now() without an xid, let others commit, then write: an xid younger than theirs with an older now().
        await client.query('select now()')
        await client.query(`select pg_sleep(${(next() * 0.05).toFixed(3)})`)
        tally.lateXids++
      }
      for (let step = 1 + Math.floor(next() * 4); step > 0; step--) {
        const kind = next()
        if (kind < 0.5) {
          await client.query(write())
        } else if (kind < 0.75) {
          tally.savepoints++
          await client.query('savepoint s')
          await client.query(write())
          await client.query(next() < 0.7 ? 'release savepoint s' : 'rollback to savepoint s')
        } else {
          tally.exceptionBlocks++
          const raise = next() < 0.3 ? `raise exception 'undo';` : ''
          await client.query(`do $$ begin ${write()}; ${raise} exception when others then null; end $$`)
        }
        if (next() < 0.3) await client.query(`select pg_sleep(${(next() * 0.08).toFixed(3)})`)
      }
      const rollback = next() < 0.1
      if (rollback) tally.rolledBack++
      await client.query(rollback ? 'rollback' : 'commit')
      tally.transactions++
    }
  } finally {
    await client.end()
  }
}

/** Starts the runner child and SIGKILLs it `delayMs` after its first run started. */
const runAndKill = (table: string, delayMs: number, lookback: string | undefined) =>
  runUntilKilled(CHILD, [db.sourceUrl, db.warehouseUrl, table, ...(lookback ? [lookback] : [])], delayMs)

describe.each([
  ['without lookback (late rows found at any value)', undefined],
  ['with a lookback wider than any backdating', '1 hour'],
])('incremental extraction under concurrent random writers and SIGKILLs, %s', (_name, lookback) => {
  it('ends with bronze equal to the source: merge row for row, append every version exactly once', { timeout: 240_000 }, async () => {
    const seed = Number(process.env.RANDOM_WRITER_SEED ?? 20261128) + (lookback ? 1 : 0)
    const next = seededRandom(seed)
    const table = lookback ? 'ledger_lb' : 'ledger'
    await db.sourceSql(`create table ${table} (id serial primary key, note text, c timestamptz, v uuid not null default gen_random_uuid())`)
    await db.sourceSql(`insert into ${table} (note, c) select 'seed', now() - interval '1 day' + g * interval '1 second' from generate_series(1, 500) g`)
    const tally: Tally = { transactions: 0, rolledBack: 0, savepoints: 0, exceptionBlocks: 0, lateXids: 0, nullCursors: 0, backdated: 0 }
    let stop = false
    const writers = [1, 2, 3].map((index) => writer(db.sourceUrl, table, seed * 10 + index, tally, () => stop))
    let midRun = 0
    try {
      for (let kill = 0; kill < 6; kill++) {
        if ((await runAndKill(table, 200 + Math.floor(next() * 1200), lookback)).midRun) midRun++
      }
    } finally {
      stop = true
      await Promise.all(writers)
    }
    // Two final runs of each pipeline: the first may still leave rows of the writers' last transactions to the next.
    const from = incrementalSource(db.source, { table, cursorColumn: 'c', ...(lookback ? { lookback } : {}) })
    for (let run = 0; run < 2; run++) {
      await extract({ from, to: postgresSink(db.warehouse, { mode: 'append', table: `${table}_append` }) })
      await extract({ from, to: postgresSink(db.warehouse, { mode: 'merge', table: `${table}_merge` }) })
    }

    // The hard cases happened, and kills landed in runs.
    expect(midRun).toBeGreaterThanOrEqual(2)
    for (const count of [tally.rolledBack, tally.savepoints, tally.exceptionBlocks, tally.lateXids, tally.nullCursors, tally.backdated]) {
      expect(count).toBeGreaterThan(5)
    }
    const merged = await tablesEqual(db.sourceUrl, table, db.warehouseUrl, `bronze.${table}_merge`, COLUMNS)
    expect(merged).toMatchObject({ missing: 0, extra: 0 })
    const [twice] = await db.warehouseSql(`select count(*)::int as n from (select v from bronze.${table}_append group by v having count(*) > 1) d`)
    expect(twice).toEqual({ n: 0 })
    const appended = await tablesEqual(db.sourceUrl, table, db.warehouseUrl, `bronze.${table}_append`, COLUMNS)
    expect(appended.missing).toBe(0)
  })
})
