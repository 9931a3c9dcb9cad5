import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AbortedError,
  connect,
  copySource,
  extract,
  incrementalSource,
  memoryCheckpoints,
  parallelSource,
  partitionedSource,
  querySource,
  tableSource,
  type Connection,
  type Sink,
  type Source,
} from '../src/index.js'
import { useDatabases } from './support/fixtures.js'
import { sql } from 'kysely'

const db = useDatabases('exit')
const POOL = 3
let source: Connection

beforeAll(async () => {
  // A small pool makes a client kept by a source visible: the next queries wait for it.
  source = connect({ url: db.sourceUrl, pool: { max: POOL, acquireTimeoutMs: 5_000 } })
  await db.sourceSql(`create table items (id int primary key, note text, c int)`)
  await db.sourceSql(`insert into items select g, repeat('x', 200), g from generate_series(1, 20000) g`)
  await db.sourceSql(`create table parts (id int, note text, c int) partition by range (id)`)
  await db.sourceSql(`create table parts_a partition of parts for values from (0) to (10000)`)
  await db.sourceSql(`create table parts_b partition of parts for values from (10000) to (30000)`)
  await db.sourceSql(`insert into parts select g, repeat('x', 200), g from generate_series(1, 20000) g`)
})
afterAll(async () => {
  await source?.close()
})

const kinds: [string, () => Source, 'rows' | 'bytes'][] = [
  ['tableSource', () => tableSource(source, { table: 'items', batchSize: 100 }), 'rows'],
  ['querySource', () => querySource(source, sql`select * from items`.compile(source.kysely()), { name: 'q', batchSize: 100 }) as Source, 'rows'],
  ['copySource (decoded)', () => copySource(source, { table: 'items', batchSize: 100 }), 'rows'],
  ['copySource (bytes)', () => copySource(source, { table: 'items' }), 'bytes'],
  ['incrementalSource', () => incrementalSource(source, { table: 'items', cursorColumn: 'c', batchSize: 100, checkpoints: memoryCheckpoints() }), 'rows'],
  ['parallelSource', () => parallelSource(source, { table: 'items', concurrency: 2, batchSize: 100 }), 'rows'],
  ['partitionedSource (bytes)', () => partitionedSource(source, { table: 'parts', concurrency: 2 }), 'bytes'],
]

/** Every client of the pool answers at once, and no backend of the source is left in a transaction or a COPY. */
async function poolIsClean() {
  const answers = await Promise.all(Array.from({ length: POOL }, () => source.query<{ one: number }>('select 1 as one')))
  expect(answers.map((answer) => answer.rows[0]?.one)).toEqual(Array(POOL).fill(1))
  for (let waited = 0; ; waited += 50) {
    const busy = await db.sourceSql(
      `select count(*)::int as n from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and (state like 'idle in transaction%' or query ilike 'copy%' and state = 'active')`,
    )
    if (busy[0]?.n === 0) return
    if (waited > 5_000) expect(busy[0]?.n).toBe(0)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A sink that fails after it has taken `after` batches (or chunks). */
function failingSink(after: number): Sink {
  const fail = async (input: AsyncIterable<unknown>) => {
    let seen = 0
    for await (const _ of input) if (++seen > after) throw new Error('the warehouse went away')
    throw new Error('the warehouse went away')
  }
  return { name: 'failing', mode: 'append', checkpoints: memoryCheckpoints(), write: fail, writeCopyText: fail }
}

describe.each(kinds)('leaving %s early', (_name, make, path) => {
  it('by a break: the pool answers at once and nothing is left open', async () => {
    for (let round = 0; round < 3; round++) {
      const from = make()
      if (path === 'bytes') {
        for await (const _ of (await from.open!()).copyText!()) break
      } else {
        for await (const _ of from) break
      }
      await poolIsClean()
    }
  })

  it('by a failing sink: the error is the sink\u2019s and the pool answers at once', async () => {
    const error = await extract({ from: make(), to: failingSink(2), retry: false }).catch((caught: unknown) => caught)
    expect((error as Error).message).toMatch(/the warehouse went away/)
    await poolIsClean()
  })

  it('by an abort: AbortedError, and the pool answers at once', async () => {
    const controller = new AbortController()
    const slow: Sink = {
      name: 'slow',
      mode: 'append',
      checkpoints: memoryCheckpoints(),
      async write(batches) {
        let seen = 0
        for await (const _ of batches) if (++seen === 2) controller.abort()
        return { rows: 0, bytes: 0, target: 'slow' }
      },
      async writeCopyText(chunks) {
        controller.abort()
        for await (const _ of chunks) await new Promise((resolve) => setTimeout(resolve, 5))
        return { rows: 0, bytes: 0, target: 'slow' }
      },
    }
    const error = await extract({ from: make(), to: slow, signal: controller.signal, retry: false }).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(AbortedError)
    await poolIsClean()
  })
})
