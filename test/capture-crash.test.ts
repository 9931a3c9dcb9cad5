import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'
import { ensurePublication, ensureSlot } from '../src/cdc.js'
import { captureUntil } from './support/capture.js'
import { checksum } from './support/checksum.js'
import { killTimer } from './support/kill-timer.js'
import { useDatabases } from './support/fixtures.js'
import { seededRandom } from './support/random.js'

const db = useDatabases('ccrash')
const CHILD = fileURLToPath(new URL('./support/capture-child.ts', import.meta.url))

/** Runs the capturing child while `work` changes the source, and SIGKILLs it `delayMs` after its first batch. */
function runAndKill(delayMs: number, work: () => Promise<void>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, db.sourceUrl, db.warehouseUrl, 'slot_crash', 'pub_crash'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let batches = 0
    let stderr = ''
    const kill = killTimer(child, delayMs)
    child.stdout.on('data', (data: Buffer) => {
      batches += data
        .toString()
        .split('\n')
        .filter((line) => line === 'batch').length
      if (batches > 0) kill.begin()
    })
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()))
    void work().catch(reject)
    child.on('exit', (code, signal) => {
      kill.clear()
      if (signal !== 'SIGKILL') reject(new Error(`the child ended by itself (${code}): ${stderr}`))
      else resolve(batches)
    })
  })
}

it(
  'survives SIGKILL at random points, spilled transactions included: the change log has every change once and replays to the source',
  { timeout: 300_000 },
  async () => {
    const next = seededRandom(Number(process.env.CRASH_SEED ?? 7))
    await db.sourceSql(`create table balances (id int primary key, amount int not null)`)
    await ensurePublication(db.source, 'pub_crash', [{ table: 'balances' }])
    await ensureSlot(db.source, 'slot_crash')
    let committed = 0
    let killedWhileCapturing = 0
    for (let iteration = 0; iteration < 10; iteration++) {
      // While the child captures, the source keeps changing: inserts, updates and deletes in many small transactions.
      const work = async () => {
        for (let step = 0; step < 20; step++) {
          const id = Math.floor(next() * 300)
          const roll = next()
          if (roll < 0.5) await db.sourceSql(`insert into balances values ($1, $2) on conflict (id) do update set amount = excluded.amount`, [id, step])
          else if (roll < 0.8) await db.sourceSql(`update balances set amount = amount + 1 where id % 7 = $1`, [id % 7])
          else await db.sourceSql(`delete from balances where id = $1`, [id])
          committed++
          await new Promise((resolve) => setTimeout(resolve, Math.floor(next() * 30)))
        }
      }
      // Anywhere in the capture: the work goes on for about a second after the first batch.
      if ((await runAndKill(Math.floor(next() * 1500), work)) > 0) killedWhileCapturing++
    }
    expect(committed).toBe(200)
    // The kills must have hit a capture that was running, or this proves nothing.
    expect(killedWhileCapturing).toBeGreaterThanOrEqual(5)

    // One last capture drains what is left; it stops once nothing new arrives.
    await captureUntil({ source: db.source, warehouse: db.warehouse, slot: 'slot_crash', publication: 'pub_crash', apply: true, firstMs: 3_000, idleMs: 1_500 })

    // Every change once: no (commit_lsn, seq) twice.
    const [unique] = await db.warehouseSql(`select count(*)::int as n, count(distinct (commit_lsn, seq))::int as distinct_changes from bronze.cdc_changes`)
    expect(unique?.n).toBe(unique?.distinct_changes)
    // Replaying the change log (last change per key wins; a delete removes) gives exactly the source table.
    const replayed = await db.warehouseSql(
      `select (data->>'id')::int as id, (data->>'amount')::int as amount from (
       select distinct on (key->>'id') operation, data from bronze.cdc_changes
        where table_name = 'balances' order by key->>'id', commit_lsn desc, seq desc) last
      where operation <> 'delete' order by 1`,
    )
    const source = await db.sourceSql(`select id, amount from balances order by id`)
    expect(replayed).toEqual(source)
    expect(source.length).toBeGreaterThan(50)
    // And the bronze table, applied in the same transactions as the log, equals the source.
    expect(await checksum(db.warehouseDatabase, 'bronze.br_balances', ['id', 'amount'])).toEqual(
      await checksum(db.sourceDatabase, 'balances', ['id', 'amount']),
    )
  },
)
