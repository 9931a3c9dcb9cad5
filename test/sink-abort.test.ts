import { createServer, connect as netConnect, type Server, type Socket } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import { AbortedError, connect, copySource, extract, postgresSink } from '../src/index.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('abort')

async function seed(table: string) {
  await db.sourceSql(`drop table if exists ${table}`)
  await db.sourceSql(`create table ${table} (id int primary key, status text)`)
  await db.sourceSql(`insert into ${table} select g, 'v1' from generate_series(1, 1000) g`)
}

/** Bronze as text, for before/after comparisons. */
async function bronzeOf(table: string): Promise<unknown[]> {
  return db.warehouseSql(`select id, status from bronze.br_${table} order by id`)
}

/** Sessions of the warehouse database other than the caller's that wait on a lock. */
async function lockWaiters(): Promise<number> {
  const [row] = await db.warehouseSql(
    `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
  )
  return (row as { n: number }).n
}

/** Runs `fn`, aborting its signal after `afterMs`; returns what it threw and how long after the abort it settled. */
async function abortAfter(afterMs: number, fn: (signal: AbortSignal) => Promise<unknown>): Promise<{ error: unknown; settledMs: number }> {
  const controller = new AbortController()
  let abortedAt = 0
  const timer = setTimeout(() => {
    abortedAt = performance.now()
    controller.abort()
  }, afterMs)
  const error = await fn(controller.signal).then(
    () => undefined,
    (failure: unknown) => failure,
  )
  clearTimeout(timer)
  return { error, settledMs: abortedAt ? performance.now() - abortedAt : -1 }
}

describe('aborting a run while the PostgreSQL sink waits', () => {
  for (const mode of ['replace', 'append', 'merge'] as const) {
    it(`${mode}: an abort ends a wait on another session's ACCESS EXCLUSIVE lock at once, and the warehouse is left as it was`, async () => {
      const table = `locked_${mode}`
      await seed(table)
      await extract({ from: copySource(db.source, { table }), to: postgresSink(db.warehouse, { mode }) })
      const before = await bronzeOf(table)
      await db.sourceSql(`update ${table} set status = 'v2'`)
      await db.sourceSql(`insert into ${table} values (1001, 'v2')`)

      const holder = await clientFor(db.warehouseUrl)
      try {
        await holder.query('begin')
        await holder.query(`lock table bronze.br_${table} in access exclusive mode`)
        // Held 5 s at most, so that a run that ignores the abort ends (and fails the test) instead of hanging.
        const letGo = setTimeout(() => void holder.query('rollback').catch(() => undefined), 5000)
        onTestFinished(() => clearTimeout(letGo))
        const { error, settledMs } = await abortAfter(300, (signal) =>
          extract({ from: copySource(db.source, { table }), to: postgresSink(db.warehouse, { mode }), signal }),
        )
        expect(error).toBeInstanceOf(AbortedError)
        expect(settledMs).toBeGreaterThanOrEqual(0)
        expect(settledMs).toBeLessThan(2000)
        // The wait ended in the server too: no backend of the run is still queued behind the lock.
        await expect.poll(lockWaiters, { timeout: 2000 }).toBe(0)
      } finally {
        await holder.query('rollback')
        await holder.end()
      }
      // Nothing the aborted run did shows once the lock is gone.
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(await bronzeOf(table)).toEqual(before)
      expect(await db.warehouseSql(`select relname from pg_class where relname like 'pgdk_stage_%'`)).toEqual([])
      // The pool still answers, and a run after works.
      expect((await db.warehouse.query('select 1 as one')).rows).toEqual([{ one: 1 }])
      await extract({ from: copySource(db.source, { table }), to: postgresSink(db.warehouse, { mode: 'replace' }) })
      expect(await db.warehouseSql(`select count(*)::int as n, min(status) as status from bronze.br_${table}`)).toEqual([{ n: 1001, status: 'v2' }])
    })
  }

  it('an abort ends a run whose warehouse stopped answering (a stalled network), and the warehouse is left as it was', async () => {
    const table = 'stalled'
    await seed(table)
    await extract({ from: copySource(db.source, { table }), to: postgresSink(db.warehouse, { mode: 'replace' }) })
    const before = await bronzeOf(table)
    await db.sourceSql(`update ${table} set status = 'v2'`)

    const proxy = await stallingProxy(new URL(db.warehouseUrl))
    const warehouse = connect({ url: proxy.url })
    const holder = await clientFor(db.warehouseUrl)
    try {
      // The run waits on a lock at its swap; then the network to the warehouse stops passing bytes (both ways, new
      // connections too, so a cancel request cannot get through either), and the run is aborted.
      await holder.query('begin')
      await holder.query(`lock table bronze.br_${table} in access exclusive mode`)
      const controller = new AbortController()
      const run = extract({ from: copySource(db.source, { table }), to: postgresSink(warehouse, { mode: 'replace' }), signal: controller.signal, retry: false })
      const outcome = run.then(
        () => undefined,
        (failure: unknown) => failure,
      )
      await expect.poll(lockWaiters, { timeout: 5000 }).toBe(1)
      proxy.stall()
      // Stalled 6 s at most, so that a run that ignores the abort ends (and fails the test) instead of hanging.
      const letGo = setTimeout(() => {
        proxy.resume()
        void holder.query('rollback').catch(() => undefined)
      }, 6000)
      onTestFinished(() => clearTimeout(letGo))
      const abortedAt = performance.now()
      controller.abort()
      const error = await outcome
      expect(error).toBeInstanceOf(AbortedError)
      expect(performance.now() - abortedAt).toBeLessThan(2000)
      expect(warehouse.stats().total).toBe(0)
    } finally {
      proxy.resume()
      await holder.query('rollback').catch(() => undefined)
      await holder.end()
    }
    // Once the network is back, the cancel that was held up reaches the server and the run's backend rolls back.
    await expect.poll(lockWaiters, { timeout: 5000 }).toBe(0)
    expect((await warehouse.query('select 1 as one')).rows).toEqual([{ one: 1 }])
    await warehouse.close()
    await proxy.close()
    await expect
      .poll(
        async () =>
          (
            await db.warehouseSql(
              `select count(*)::int as n from pg_stat_activity where datname = current_database() and xact_start is not null and pid <> pg_backend_pid()`,
            )
          )[0],
        { timeout: 5000 },
      )
      .toEqual({ n: 0 })
    expect(await bronzeOf(table)).toEqual(before)
  })
})

interface StallingProxy {
  readonly url: string
  stall(): void
  resume(): void
  close(): Promise<void>
}

/** A TCP proxy to the server that can stop passing bytes, as a hung network or a frozen server would. */
async function stallingProxy(target: URL): Promise<StallingProxy> {
  let stalled = false
  const pairs = new Set<[Socket, Socket]>()
  const held: (() => void)[] = []
  const server: Server = createServer((inbound) => {
    const open = () => {
      const outbound = netConnect(Number(target.port), target.hostname)
      const pair: [Socket, Socket] = [inbound, outbound]
      pairs.add(pair)
      for (const [from, to] of [pair, [outbound, inbound] as const]) {
        from.on('data', (chunk: Buffer) => {
          if (!stalled) to.write(chunk)
          else {
            from.pause()
            held.push(() => {
              to.write(chunk)
              from.resume()
            })
          }
        })
        from.on('close', () => to.destroy())
        from.on('error', () => to.destroy())
      }
    }
    if (stalled) {
      inbound.pause()
      held.push(() => {
        inbound.resume()
        open()
      })
    } else open()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const url = new URL(target.toString())
  url.hostname = '127.0.0.1'
  url.port = String(port)
  return {
    url: url.toString(),
    stall: () => {
      stalled = true
    },
    resume: () => {
      stalled = false
      for (const release of held.splice(0)) release()
    },
    close: async () => {
      for (const [a, b] of pairs) {
        a.destroy()
        b.destroy()
      }
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
