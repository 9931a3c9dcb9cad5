import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'
import { bronzeMetadata, extract, incrementalSource, postgresSink } from '../src/index.js'
import { checksum } from './support/checksum.js'
import { runUntilKilled } from './support/run-until-killed.js'
import { useDatabases } from './support/fixtures.js'
import { seededRandom } from './support/random.js'

const db = useDatabases('crash')
const COLUMNS = ['id', 'status', 'amount', 'updated_at']
const CHILD = fileURLToPath(new URL('./support/incremental-child.ts', import.meta.url))

/** Starts the child, kills it with SIGKILL `delayMs` after its first run started, and says whether a run was in progress then. */
const runAndKill = (delayMs: number) => runUntilKilled(CHILD, [db.sourceUrl, db.warehouseUrl, 'orders'], delayMs)

it('survives SIGKILL at random points: after a re-run, bronze equals the source by count and checksum', { timeout: 300_000 }, async () => {
  const seed = Number(process.env.CRASH_SEED ?? 20261124)
  const next = seededRandom(seed)
  await db.sourceSql(`create table orders (id int primary key, status text, amount numeric(10,2), updated_at timestamptz not null)`)
  await db.sourceSql(`insert into orders select g, 'new', g, clock_timestamp() from generate_series(1, 5000) g`)
  let nextId = 5001
  let midRun = 0
  for (let iteration = 0; iteration < 12; iteration++) {
    // Between kills the source keeps changing: new rows and updated rows, stamped with the clock.
    const inserts = 200 + Math.floor(next() * 800)
    await db.sourceSql(`insert into orders select g, 'new', g, clock_timestamp() from generate_series($1::int, $2::int) g`, [nextId, nextId + inserts - 1])
    nextId += inserts
    await db.sourceSql(`update orders set status = 'upd' || $1, amount = amount + 1, updated_at = clock_timestamp() where id % $2 = 0`, [
      iteration,
      2 + Math.floor(next() * 20),
    ])
    const outcome = await runAndKill(Math.floor(next() * 1500))
    if (outcome.midRun) midRun++
  }
  // The kills must have hit runs in progress, not only idle moments, or this test proves nothing.
  expect(midRun).toBeGreaterThanOrEqual(5)

  await extract({
    from: incrementalSource(db.source, { table: 'orders', cursorColumn: 'updated_at', lookback: '1 second' }),
    through: [bronzeMetadata()],
    to: postgresSink(db.warehouse, { mode: 'merge' }),
  })
  expect(await checksum(db.warehouseDatabase, 'bronze.br_orders', COLUMNS)).toEqual(await checksum(db.sourceDatabase, 'orders', COLUMNS))
  const [checkpoint] = await db.warehouseSql(`select count(*)::int as n, min(status) as status from bronze.extraction_checkpoints`)
  expect(checkpoint).toEqual({ n: 1, status: 'committed' })
})
