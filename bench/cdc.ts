/**
 * The CDC case of `npm run bench`, on a pgbench-like workload (one-row updates in small transactions, 2 clients):
 * - lag: `captureChanges` runs while the workload commits; p50/p99 of commit to durable in the warehouse;
 * - throughput: a backlog of committed changes drained into bronze.cdc_changes, in changes/s;
 * - apply: the same backlog drained again on its own slot with `apply: true` (bronze_apply.br_cdc_accounts kept in step);
 * - the limit: the server decoding the same backlog with pg_logical_slot_get_binary_changes.
 */
import { execFile as execFileCallback } from 'node:child_process'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { promisify } from 'node:util'
import pg from 'pg'
import { findPostgresBinDir } from '../src/testing/index.js'

const execFile = promisify(execFileCallback)

export interface CdcBenchResult {
  changes: number
  seconds: number
  changesPerSecond: number
  lagP50Ms: number
  lagP99Ms: number
  decodeCeilingPerSecond: number
  ratioToCeiling: number
  applyPerSecond: number
}

const SLOTS = ['pgdk_bench', 'pgdk_bench_ceiling', 'pgdk_bench_apply']

export async function runCdcBench(url: string, transactions: number): Promise<CdcBenchResult> {
  // The built library, as users run it (the caller builds dist/ first).
  const { captureChanges, connect, dropSlot, ensurePublication, ensureSlot } = (await import(
    new URL('../dist/index.js', import.meta.url).href
  )) as typeof import('../src/index.js')
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  const source = connect({ url, ssl: { mode: 'disable' } })
  const warehouseUrl = new URL(url)
  warehouseUrl.pathname = '/pgdk_cdc_warehouse'
  try {
    await admin.query('drop database if exists pgdk_cdc_warehouse with (force)')
    await admin.query('create database pgdk_cdc_warehouse')
    // A dropped table leaves its publications: both are made anew.
    await admin.query('drop publication if exists pgdk_bench_pub')
    await admin.query('drop table if exists cdc_accounts')
    await admin.query(`create table cdc_accounts (aid int primary key, abalance int not null, filler char(84))`)
    await admin.query(`insert into cdc_accounts select g, 0, '' from generate_series(1, 100000) g`)
    await ensurePublication(source, 'pgdk_bench_pub', [{ table: 'cdc_accounts' }])
    for (const slot of SLOTS) await dropSlot(source, slot)
    await ensureSlot(source, 'pgdk_bench')

    const warehouse = connect({ url: warehouseUrl.toString(), ssl: { mode: 'disable' } })
    const script = join(tmpdir(), 'pgdk-cdc-bench.sql')
    await writeFile(script, '\\set aid random(1, 100000)\nupdate cdc_accounts set abalance = abalance + 1 where aid = :aid;\n')
    const pgbench = (count: number) =>
      execFile(join(findPostgresBinDir() ?? '/usr/bin', 'pgbench'), ['-n', '-c', '2', '-j', '2', '-t', String(Math.ceil(count / 2)), '-f', script, url])
    const capture = (until: number, onFirst?: () => void, { slot = 'pgdk_bench', apply = false, schema = 'bronze' } = {}) => {
      const controller = new AbortController()
      let landed = 0
      let lastAt = 0
      const timeout = setTimeout(() => controller.abort(), 300_000)
      const done = captureChanges(source, {
        slot,
        apply,
        schema,
        publication: 'pgdk_bench_pub',
        to: warehouse,
        maxBatchChanges: 10_000,
        maxBatchMs: 100,
        signal: controller.signal,
        onBatch: (batch) => {
          if (landed === 0) onFirst?.()
          landed += batch.changes
          lastAt = performance.now()
          if (landed >= until) controller.abort()
        },
      }).finally(() => clearTimeout(timeout))
      return { done, landed: () => landed, lastAt: () => lastAt }
    }

    // Lag: the capture runs while the workload commits; each change's lag is _bronze_loaded_at - commit_time.
    const live = capture(transactions / 5)
    await pgbench(transactions / 5)
    await live.done
    const lag = await warehouse.query<{ p50: string; p99: string }>(
      `select percentile_cont(0.5) within group (order by extract(epoch from _bronze_loaded_at - commit_time))::text as p50,
              percentile_cont(0.99) within group (order by extract(epoch from _bronze_loaded_at - commit_time))::text as p99
         from bronze.cdc_changes`,
    )

    // Throughput: a backlog of committed changes, drained by the capture. The ceiling slot starts here too.
    for (const slot of ['pgdk_bench_ceiling', 'pgdk_bench_apply']) {
      await dropSlot(source, slot)
      await ensureSlot(source, slot)
    }
    await pgbench(transactions)
    // Dirty pages from the data generated before (and the workload) are written out first, not during the drain.
    await admin.query('checkpoint')
    const started = performance.now()
    const drain = capture(transactions)
    await drain.done
    const landed = drain.landed()
    const seconds = (drain.lastAt() - started) / 1000

    // Apply: the same backlog on its own slot, into its own schema (the change log is keyed by commit LSN), with
    // bronze_apply.br_cdc_accounts upserted in the same transactions.
    await admin.query('checkpoint')
    const applyStarted = performance.now()
    const applied = capture(transactions, undefined, { slot: 'pgdk_bench_apply', apply: true, schema: 'bronze_apply' })
    await applied.done
    const applyPerSecond = applied.landed() / ((applied.lastAt() - applyStarted) / 1000)
    await warehouse.close()

    // The ceiling: the server decoding the same changes as pgoutput bytes, nothing else.
    const ceilingStarted = performance.now()
    const decoded = await admin.query<{ n: string }>(
      `select count(*)::text as n from pg_logical_slot_get_binary_changes('pgdk_bench_ceiling', null, null, 'proto_version', '2', 'publication_names', 'pgdk_bench_pub')`,
    )
    const ceilingSeconds = (performance.now() - ceilingStarted) / 1000
    // Each one-row transaction decodes to Begin, Update and Commit (plus one Relation).
    const ceilingChanges = (Number(decoded.rows[0]?.n ?? 0) - 1) / 3
    const changesPerSecond = landed / seconds
    const decodeCeilingPerSecond = ceilingChanges / ceilingSeconds
    return {
      changes: landed,
      seconds,
      changesPerSecond,
      lagP50Ms: Number(lag.rows[0]?.p50 ?? 0) * 1000,
      lagP99Ms: Number(lag.rows[0]?.p99 ?? 0) * 1000,
      decodeCeilingPerSecond,
      ratioToCeiling: changesPerSecond / decodeCeilingPerSecond,
      applyPerSecond,
    }
  } finally {
    for (const slot of SLOTS) await dropSlot(source, slot).catch(() => undefined)
    await source.close()
    await admin.end()
  }
}
