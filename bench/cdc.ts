/**
 * The CDC case of `npm run bench`: change capture against its limit, `pg_recvlogical` draining the same backlog to
 * /dev/null, measured in the same run.
 *
 * Two backlogs of committed one-row updates on a pgbench-like accounts table (100,000 rows):
 *   A  many one-row transactions (`--cdc-transactions`, default 300,000): every change has its own Begin and Commit;
 *   B  a few large transactions (`--cdc-large`, default 3 x 100,000 updates), streamed in parts (`streaming 'on'`).
 * Each backlog is drained by four consumers, each on its own slot made before the backlog was written (so each decodes
 * the same WAL), one after another, after a checkpoint:
 *   limit        pg_recvlogical --plugin=pgoutput (proto_version 2, the same publication, messages and streaming as
 *                cdcSource) writing to /dev/null, until the backlog's end LSN;
 *   source       cdcSource, each batch acknowledged, nothing else;
 *   change log   captureChanges into <schema>.cdc_changes;
 *   apply        captureChanges with `apply: true` (bronze.br_cdc_accounts kept in step).
 * Each consumer's rate is printed as changes/s and as a ratio to the limit, with the CPU seconds of each process that
 * took part: the walsender (the slot's active_pid), Node (process.cpuUsage, or pg_recvlogical's own), and the
 * warehouse's backends (all client backends of the warehouse database): on 2 cores they share the CPU, and what holds
 * a ratio back shows there.
 *
 * Then apply's statement shapes, each a backlog of one transaction into a bronze table copied first by the initial
 * snapshot (`--cdc-shape-changes`, default 20,000 changes, on tables of 100,000 rows): deletes by a one-column key and
 * by a two-column key, and updates and deletes of a REPLICA IDENTITY FULL table without a key.
 *
 * Also the lag of a capture running while a pgbench workload commits (`--cdc-lag-transactions`, default 10,000).
 *
 * The memory case (`--cases cdc-large-tx`, `runCdcLargeTxBench`): one transaction of `--cdc-huge` inserts (default
 * 2,000,000 rows of about 440 bytes) captured with apply by a fresh process, its peak RSS against issue #15's
 * <= 300 MB, sent in parts and whole at commit (`--cdc-huge-streaming on,off`), checked exact by checksum.
 */
import { execFile as execFileCallback, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import pg from 'pg'
import { findPostgresBinDir } from '../src/testing/index.js'

const execFile = promisify(execFileCallback)

export interface CdcBenchOptions {
  /** Backlog A: one-row update transactions. */
  readonly transactions: number
  /** Backlog B: this many transactions... */
  readonly largeTransactions: number
  /** ...of this many updates each. */
  readonly largeSize: number
  /** Changes of each apply shape. */
  readonly shapeChanges: number
  /** Transactions of the live workload the lag is measured on (0: skipped). */
  readonly lagTransactions: number
}

export interface CpuSeconds {
  walsender: number
  /** Node (the consumer), or pg_recvlogical for the limit. */
  client: number
  warehouse: number
}

export interface ConsumerResult {
  changes: number
  seconds: number
  changesPerSecond: number
  ratioToLimit: number
  cpu: CpuSeconds
}

export type Consumer = 'limit' | 'source' | 'changeLog' | 'apply'
export const CONSUMERS: readonly Consumer[] = ['limit', 'source', 'changeLog', 'apply']
export const CONSUMER_LABELS: Record<Consumer, string> = {
  limit: 'pg_recvlogical > /dev/null (limit)',
  source: 'cdcSource + acknowledge',
  changeLog: 'captureChanges, change log',
  apply: 'captureChanges with apply',
}
/** The ratios to the limit issue #15 asks for. */
export const CDC_TARGETS: Partial<Record<Consumer, number>> = { changeLog: 0.5, apply: 0.3 }

export interface CdcBenchResult {
  backlogs: Record<'A' | 'B', { changes: number; consumers: Record<Consumer, ConsumerResult> }>
  /** Apply's statement shapes, changes/s. */
  shapes: Record<string, number>
  lagP50Ms: number | null
  lagP99Ms: number | null
}

const PUBLICATION = 'pgdk_bench_pub'
const WAREHOUSE = 'pgdk_cdc_warehouse'
const TICKS = 100 // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux

/** Drops a slot once its walsender has gone (a consumer's server side ends a moment after its client closes). */
async function dropWhenIdle(admin: pg.Client, slot: string): Promise<void> {
  for (let waited = 0; waited < 30_000; waited += 100) {
    const { rows } = await admin.query<{ active: boolean }>('select active from pg_replication_slots where slot_name = $1', [slot])
    if (!rows[0]) return
    if (!rows[0].active) {
      await admin.query('select pg_drop_replication_slot($1)', [slot])
      return
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`slot ${slot} stayed active for 30 s`)
}

/** CPU seconds (user + system) of a process, from /proc/<pid>/stat; undefined once it is gone. */
function cpuOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces): state is the first, utime the 12th, stime the 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICKS
  } catch {
    return undefined
  }
}

/**
 * Samples the CPU of the server processes serving one consumer while it runs: the walsender of its slot and the
 * warehouse database's client backends. A process's CPU counts from when it is first seen to its last sample.
 */
class ServerCpu {
  readonly #first = new Map<number, number>()
  readonly #last = new Map<number, number>()
  readonly #roles = new Map<number, 'walsender' | 'warehouse'>()
  #timer: NodeJS.Timeout | undefined
  #busy = false

  constructor(
    private readonly admin: pg.Client,
    private readonly slot: string,
  ) {}

  start(): void {
    // #discover catches its own failures (the last samples stand); the catch keeps any other out of unhandled rejections.
    this.#timer = setInterval(() => {
      this.#discover().catch(() => undefined)
    }, 50)
  }

  async #discover(): Promise<void> {
    if (this.#busy) return
    this.#busy = true
    try {
      const { rows } = await this.admin.query<{ pid: number; role: 'walsender' | 'warehouse' }>(
        `select active_pid as pid, 'walsender' as role from pg_replication_slots where slot_name = $1 and active_pid is not null
         union all
         select pid, 'warehouse' from pg_stat_activity where datname = $2 and backend_type = 'client backend' and pid <> pg_backend_pid()`,
        [this.slot, WAREHOUSE],
      )
      for (const { pid, role } of rows) this.#roles.set(pid, role)
      this.sample()
    } catch {
      // the admin connection is busy or gone at the end: the last samples stand
    } finally {
      this.#busy = false
    }
  }

  /** Reads every known process's CPU now (synchronous: call it at the moment a consumer is done). */
  sample(): void {
    for (const pid of this.#roles.keys()) {
      const cpu = cpuOf(pid)
      if (cpu === undefined) continue
      if (!this.#first.has(pid)) this.#first.set(pid, cpu)
      this.#last.set(pid, cpu)
    }
  }

  stop(): { walsender: number; warehouse: number } {
    clearInterval(this.#timer)
    this.sample()
    const total = { walsender: 0, warehouse: 0 }
    for (const [pid, role] of this.#roles) total[role] += (this.#last.get(pid) ?? 0) - (this.#first.get(pid) ?? 0)
    return total
  }
}

/** The built library, as users run it (the caller builds dist/ first): the root entry and pg-datakit/cdc. */
type BuiltLibrary = typeof import('../src/index.js') & typeof import('../src/cdc.js')
async function builtLibrary(): Promise<BuiltLibrary> {
  const root = (await import(new URL('../dist/index.js', import.meta.url).href)) as typeof import('../src/index.js')
  const cdc = (await import(new URL('../dist/cdc.js', import.meta.url).href)) as typeof import('../src/cdc.js')
  return { ...root, ...cdc }
}

export async function runCdcBench(url: string, options: CdcBenchOptions): Promise<CdcBenchResult> {
  const lib = await builtLibrary()
  const { captureChanges, cdcSource, connect, dropSlot, ensurePublication, ensureSlot } = lib
  const binDir = findPostgresBinDir() ?? '/usr/bin'
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  const sampler = new pg.Client({ connectionString: url })
  await sampler.connect()
  const source = connect({ url, ssl: { mode: 'disable' } })
  const warehouseUrl = new URL(url)
  warehouseUrl.pathname = `/${WAREHOUSE}`
  const slots = new Set<string>()
  const newSlot = async (name: string) => {
    await dropSlot(source, name)
    await ensureSlot(source, name)
    slots.add(name)
  }
  try {
    await admin.query(`drop database if exists ${WAREHOUSE} with (force)`)
    await admin.query(`create database ${WAREHOUSE}`)
    const warehouse = connect({ url: warehouseUrl.toString(), ssl: { mode: 'disable' } })
    const warehouseAdmin = new pg.Client({ connectionString: warehouseUrl.toString() })
    await warehouseAdmin.connect()
    // A dropped table leaves its publications: both are made anew.
    await admin.query(`drop publication if exists ${PUBLICATION}`)
    await admin.query('drop table if exists cdc_accounts')
    await admin.query(`create table cdc_accounts (aid int primary key, abalance int not null, filler char(84))`)
    await admin.query(`insert into cdc_accounts select g, 0, '' from generate_series(1, 100000) g`)
    await admin.query('vacuum analyze cdc_accounts')
    await ensurePublication(source, PUBLICATION, [{ table: 'cdc_accounts' }])

    /** Runs captureChanges (or cdcSource alone) on `slot` until `changes` landed; wall seconds and CPU. */
    const drain = async (consumer: Exclude<Consumer, 'limit'>, slot: string, changes: number, schema: string) => {
      const server = new ServerCpu(sampler, slot)
      const cpuBefore = process.cpuUsage()
      const started = performance.now()
      server.start()
      let landed = 0
      let doneAt = 0
      const controller = new AbortController()
      const timeout = setTimeout(() => controller.abort(), 600_000)
      const finish = () => {
        doneAt = performance.now()
        server.sample()
        controller.abort()
      }
      try {
        if (consumer === 'source') {
          const stream = cdcSource(source, { slot, publication: PUBLICATION, maxBatchChanges: 10_000, maxBatchMs: 100, signal: controller.signal })
          try {
            for await (const batch of stream) {
              batch.acknowledge()
              landed += batch.changes
              if (landed >= changes) {
                finish()
                break
              }
            }
          } finally {
            await stream.close()
          }
        } else {
          await captureChanges(source, {
            slot,
            schema,
            apply: consumer === 'apply',
            publication: PUBLICATION,
            to: warehouse,
            maxBatchChanges: 10_000,
            maxBatchMs: 100,
            signal: controller.signal,
            onBatch: (batch) => {
              landed += batch.changes
              if (landed >= changes) finish()
            },
          })
        }
      } finally {
        clearTimeout(timeout)
      }
      const cpu = process.cpuUsage(cpuBefore)
      const { walsender, warehouse: warehouseCpu } = server.stop()
      if (landed < changes) throw new Error(`${consumer} on ${slot}: ${landed} of ${changes} changes landed before the timeout`)
      return { changes: landed, seconds: (doneAt - started) / 1000, cpu: { walsender, client: (cpu.user + cpu.system) / 1e6, warehouse: warehouseCpu } }
    }

    /** pg_recvlogical draining `slot` to /dev/null up to `endLsn`, with cdcSource's options. */
    const recvlogical = async (slot: string, changes: number, endLsn: string) => {
      const server = new ServerCpu(sampler, slot)
      const target = new URL(url)
      const args = [
        '-d',
        `host=${target.hostname} port=${target.port || 5432} user=${decodeURIComponent(target.username) || 'postgres'} dbname=${target.pathname.slice(1) || 'postgres'}`,
        `--slot=${slot}`,
        '--start',
        '--plugin=pgoutput',
        '--no-loop',
        `--endpos=${endLsn}`,
        '-f',
        '/dev/null',
        '-o',
        'proto_version=2',
        '-o',
        `publication_names=${PUBLICATION}`,
        '-o',
        'messages=true',
        '-o',
        'streaming=on',
      ]
      const started = performance.now()
      server.start()
      // bash's `times` prints the CPU of its children (pg_recvlogical) on its second line.
      const { stdout, stderr, code } = await new Promise<{ stdout: string; stderr: string; code: number | null }>((resolve, reject) => {
        const child = spawn('bash', ['-c', '"$0" "$@" || exit $?; times', join(binDir, 'pg_recvlogical'), ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, PGPASSWORD: decodeURIComponent(target.password) },
        })
        let out = ''
        let err = ''
        child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
        child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
        child.on('error', reject)
        child.on('exit', (exitCode) => resolve({ stdout: out, stderr: err, code: exitCode }))
      })
      const seconds = (performance.now() - started) / 1000
      const { walsender } = server.stop()
      if (code !== 0) throw new Error(`pg_recvlogical exited with ${code}: ${stderr.trim()}`)
      const children = stdout
        .trim()
        .split('\n')
        .at(-1)
        ?.match(/(\d+)m([\d.]+)s (\d+)m([\d.]+)s/)
      const client = children ? Number(children[1]) * 60 + Number(children[2]) + Number(children[3]) * 60 + Number(children[4]) : Number.NaN
      return { changes, seconds, cpu: { walsender, client, warehouse: 0 } }
    }

    const backlogs = {} as CdcBenchResult['backlogs']
    for (const shape of ['A', 'B'] as const) {
      const slotOf = (consumer: Consumer) => `pgdk_bench_${shape.toLowerCase()}_${consumer.toLowerCase()}`
      for (const consumer of CONSUMERS) await newSlot(slotOf(consumer))
      const changes = shape === 'A' ? options.transactions : options.largeTransactions * options.largeSize
      console.error(
        shape === 'A'
          ? `cdc A: writing ${changes.toLocaleString('en')} one-row update transactions ...`
          : `cdc B: writing ${options.largeTransactions} transactions of ${options.largeSize.toLocaleString('en')} updates ...`,
      )
      if (shape === 'A') {
        // One transaction per update, committed by a procedure (faster to make than by pgbench round trips).
        await admin.query(
          `do $$ begin for i in 1..${options.transactions} loop
             update cdc_accounts set abalance = abalance + 1 where aid = 1 + (i::bigint * 7919) % 100000; commit;
           end loop; end $$`,
        )
      } else {
        for (let transaction = 0; transaction < options.largeTransactions; transaction++) {
          await admin.query(`update cdc_accounts set abalance = abalance + 1 where aid <= ${options.largeSize}`)
        }
      }
      const endLsn = (await admin.query<{ lsn: string }>('select pg_current_wal_insert_lsn()::text as lsn')).rows[0]?.lsn as string
      const results = {} as Record<Consumer, ConsumerResult>
      for (const consumer of CONSUMERS) {
        // Dirty pages of the backlog (and of the consumer before) are written out first, not during the drain.
        await admin.query('checkpoint')
        await warehouseAdmin.query('checkpoint')
        const measured =
          consumer === 'limit'
            ? await recvlogical(slotOf(consumer), changes, endLsn)
            : await drain(consumer, slotOf(consumer), changes, `bronze_${shape.toLowerCase()}_${consumer.toLowerCase()}`)
        const changesPerSecond = measured.changes / measured.seconds
        results[consumer] = { ...measured, changesPerSecond, ratioToLimit: changesPerSecond / (results.limit?.changesPerSecond ?? changesPerSecond) }
        console.error(`  ${CONSUMER_LABELS[consumer]}: ${formatConsumer(results[consumer])}`)
        await dropWhenIdle(admin, slotOf(consumer))
      }
      backlogs[shape] = { changes, consumers: results }
    }

    const shapes =
      options.shapeChanges > 0 ? await applyShapes(lib, admin, source, warehouse, warehouseAdmin, options.shapeChanges, (slot) => slots.add(slot)) : {}

    let lagP50Ms: number | null = null
    let lagP99Ms: number | null = null
    if (options.lagTransactions > 0) {
      // Lag: the capture runs while a pgbench workload commits; each change's lag is _bronze_loaded_at - commit_time.
      await newSlot('pgdk_bench_lag')
      const script = join(tmpdir(), 'pgdk-cdc-bench.sql')
      await writeFile(script, '\\set aid random(1, 100000)\nupdate cdc_accounts set abalance = abalance + 1 where aid = :aid;\n')
      const controller = new AbortController()
      let landed = 0
      const live = captureChanges(source, {
        slot: 'pgdk_bench_lag',
        schema: 'bronze_lag',
        publication: PUBLICATION,
        to: warehouse,
        maxBatchChanges: 10_000,
        maxBatchMs: 100,
        signal: controller.signal,
        onBatch: (batch) => {
          landed += batch.changes
          if (landed >= options.lagTransactions) controller.abort()
        },
      })
      const timeout = setTimeout(() => controller.abort(), 300_000)
      await execFile(join(binDir, 'pgbench'), ['-n', '-c', '2', '-j', '2', '-t', String(Math.ceil(options.lagTransactions / 2)), '-f', script, url])
      await live.finally(() => clearTimeout(timeout))
      const lag = await warehouseAdmin.query<{ p50: string; p99: string }>(
        `select percentile_cont(0.5) within group (order by extract(epoch from _bronze_loaded_at - commit_time))::text as p50,
                percentile_cont(0.99) within group (order by extract(epoch from _bronze_loaded_at - commit_time))::text as p99
           from bronze_lag.cdc_changes`,
      )
      lagP50Ms = Number(lag.rows[0]?.p50 ?? 0) * 1000
      lagP99Ms = Number(lag.rows[0]?.p99 ?? 0) * 1000
    }
    await warehouseAdmin.end()
    await warehouse.close()
    return { backlogs, shapes, lagP50Ms, lagP99Ms }
  } finally {
    for (const slot of slots) await dropSlot(source, slot).catch(() => undefined)
    await source.close()
    await sampler.end()
    await admin.end()
  }
}

/**
 * Apply's statement shapes: a table copied into bronze by the initial snapshot, then one transaction of `changes`
 * changes applied. Returns changes/s per shape.
 */
async function applyShapes(
  lib: BuiltLibrary,
  admin: pg.Client,
  source: import('../src/index.js').Connection,
  warehouse: import('../src/index.js').Connection,
  warehouseAdmin: pg.Client,
  changes: number,
  track: (slot: string) => void,
): Promise<Record<string, number>> {
  const { captureChanges, dropSlot, ensurePublication } = lib
  const rows = Math.max(100_000, changes)
  const every = Math.max(1, Math.floor(rows / changes))
  const shapes = [
    {
      name: 'delete, one-column key',
      table: 'cdc_shape_k1',
      create: `create table cdc_shape_k1 (id int primary key, v text); insert into cdc_shape_k1 select g, 'v' || g from generate_series(1, ${rows}) g`,
      change: `delete from cdc_shape_k1 where id % ${every} = 0`,
    },
    {
      name: 'delete, two-column key',
      table: 'cdc_shape_k2',
      create: `create table cdc_shape_k2 (a int, b int, v text, primary key (a, b)); insert into cdc_shape_k2 select g / 10, g % 10, 'v' || g from generate_series(1, ${rows}) g`,
      change: `delete from cdc_shape_k2 where (a * 10 + b) % ${every} = 0`,
    },
    {
      name: 'update, REPLICA IDENTITY FULL, no key',
      table: 'cdc_shape_full_u',
      create: `create table cdc_shape_full_u (a int, b text, c numeric); alter table cdc_shape_full_u replica identity full; insert into cdc_shape_full_u select g, 'b' || (g % 1000), g / 7.0 from generate_series(1, ${rows}) g`,
      change: `update cdc_shape_full_u set c = c + 1 where a % ${every} = 0`,
    },
    {
      name: 'delete, REPLICA IDENTITY FULL, no key',
      table: 'cdc_shape_full_d',
      create: `create table cdc_shape_full_d (a int, b text, c numeric); alter table cdc_shape_full_d replica identity full; insert into cdc_shape_full_d select g, 'b' || (g % 1000), g / 7.0 from generate_series(1, ${rows}) g`,
      change: `delete from cdc_shape_full_d where a % ${every} = 0`,
    },
  ]
  const result: Record<string, number> = {}
  for (const shape of shapes) {
    const slot = `pgdk_bench_${shape.table}`
    const publication = `pgdk_bench_${shape.table}_pub`
    await admin.query(`drop publication if exists ${publication}`)
    await admin.query(`drop table if exists ${shape.table}`)
    await admin.query(shape.create)
    await admin.query(`analyze ${shape.table}`)
    await ensurePublication(source, publication, [{ table: shape.table }])
    await dropSlot(source, slot)
    track(slot)
    // The initial snapshot copies the table into bronze, then the capture stops.
    const snapshot = new AbortController()
    await captureChanges(source, {
      slot,
      publication,
      schema: 'bronze_shapes',
      to: warehouse,
      apply: true,
      initialSnapshot: true,
      signal: snapshot.signal,
      onSnapshot: () => snapshot.abort(),
    })
    await warehouseAdmin.query(`analyze bronze_shapes.br_${shape.table}`)
    const changed = await admin.query(shape.change)
    const count = changed.rowCount ?? 0
    await admin.query('checkpoint')
    const controller = new AbortController()
    let landed = 0
    let doneAt = 0
    const started = performance.now()
    const timeout = setTimeout(() => controller.abort(), 600_000)
    await captureChanges(source, {
      slot,
      publication,
      schema: 'bronze_shapes',
      to: warehouse,
      apply: true,
      maxBatchChanges: 10_000,
      maxBatchMs: 100,
      signal: controller.signal,
      onBatch: (batch) => {
        landed += batch.changes
        if (landed >= count) {
          doneAt = performance.now()
          controller.abort()
        }
      },
    }).finally(() => clearTimeout(timeout))
    if (landed < count) throw new Error(`apply shape ${shape.name}: ${landed} of ${count} changes landed before the timeout`)
    result[shape.name] = count / ((doneAt - started) / 1000)
    console.error(`  apply, ${shape.name}: ${count.toLocaleString('en')} changes at ${Math.round(result[shape.name] as number).toLocaleString('en')} changes/s`)
    await dropWhenIdle(admin, slot)
  }
  return result
}

export function formatConsumer(result: ConsumerResult): string {
  return (
    `${Math.round(result.changesPerSecond).toLocaleString('en')} changes/s in ${result.seconds.toFixed(2)} s (${result.ratioToLimit.toFixed(2)}x); ` +
    `CPU s: walsender ${result.cpu.walsender.toFixed(2)}, client ${result.cpu.client.toFixed(2)}, warehouse ${result.cpu.warehouse.toFixed(2)}`
  )
}

/** The bench's report lines for the CDC case. */
export function cdcReport(result: CdcBenchResult): string[] {
  const lines: string[] = []
  for (const shape of ['A', 'B'] as const) {
    const backlog = result.backlogs[shape]
    lines.push(
      `cdc backlog ${shape}: ${backlog.changes.toLocaleString('en')} changes ${shape === 'A' ? 'in one-row transactions' : 'in large transactions'}`,
      `  ${'consumer'.padEnd(36)}${'changes/s'.padStart(11)}${'x limit'.padStart(9)}  ${'CPU s: walsender'.padStart(16)}${'client'.padStart(8)}${'warehouse'.padStart(11)}  target`,
    )
    for (const consumer of CONSUMERS) {
      const measured = backlog.consumers[consumer]
      const target = CDC_TARGETS[consumer]
      lines.push(
        `  ${CONSUMER_LABELS[consumer].padEnd(36)}${Math.round(measured.changesPerSecond).toLocaleString('en').padStart(11)}${measured.ratioToLimit.toFixed(2).padStart(9)}  ` +
          `${measured.cpu.walsender.toFixed(2).padStart(16)}${measured.cpu.client.toFixed(2).padStart(8)}${(consumer === 'limit' ? '-' : measured.cpu.warehouse.toFixed(2)).padStart(11)}  ` +
          (target ? `>= ${target.toFixed(2)} ${measured.ratioToLimit >= target ? 'met' : 'MISSED'}` : ''),
      )
    }
  }
  const shapes = Object.entries(result.shapes)
  if (shapes.length) lines.push(`cdc apply shapes (changes/s): ${shapes.map(([name, rate]) => `${name} ${Math.round(rate).toLocaleString('en')}`).join('; ')}`)
  const one = result.shapes['delete, one-column key']
  const two = result.shapes['delete, two-column key']
  if (one && two) lines.push(`  two-column key deletes ${(one / two).toFixed(2)}x slower than one-column (target <= 2: ${one / two <= 2 ? 'met' : 'MISSED'})`)
  if (result.lagP50Ms !== null)
    lines.push(`cdc lag under a pgbench workload: p50 ${Math.round(result.lagP50Ms)} ms, p99 ${Math.round(result.lagP99Ms ?? 0)} ms`)
  return lines
}

export interface CdcLargeTxOptions {
  /** Changes in the one transaction (inserts of rows of about 440 bytes). */
  readonly changes: number
  /** How the walsender sends it: in parts as it runs (`on`, past logical_decoding_work_mem), whole at commit (`off`). */
  readonly streaming: readonly ('on' | 'off')[]
}

export interface CdcLargeTxRun {
  readonly streaming: 'on' | 'off'
  readonly changes: number
  readonly seconds: number
  readonly changesPerSecond: number
  readonly peakRssMb: number
  readonly peakHeapMb: number
  readonly peakExternalMb: number
  readonly nodeCpuSeconds: number
  readonly spilledTransactions: number
  /** bronze.br_<table> equals the source by checksum, and the change log holds every change once. */
  readonly exact: boolean
}

export interface CdcLargeTxResult {
  readonly changes: number
  readonly rowBytes: number
  readonly runs: readonly CdcLargeTxRun[]
}

/** Issue #15's memory target: a 2 M-change transaction captured with apply at no more than this peak RSS. */
export const CDC_LARGE_TX_RSS_TARGET_MB = 300

/**
 * The memory case: one transaction of `changes` inserts (rows of about 440 bytes) on a published table, captured with
 * `apply: true` by a fresh Node process (bench/cdc-large-tx.mjs, the built library) whose peak RSS is the capture's
 * own. Once per streaming mode, each on its own slot made before the transaction was written: `on`, sent in parts
 * while it runs (it is far past logical_decoding_work_mem), and `off`, sent whole at its commit. Either way the
 * transaction outgrows the capture's memory bounds and waits in a spill file. Checked exact: bronze.br_cdc_huge equals
 * the source by checksum and the change log holds each change once.
 */
export async function runCdcLargeTxBench(url: string, options: CdcLargeTxOptions): Promise<CdcLargeTxResult> {
  const lib = await builtLibrary()
  const { connect, dropSlot, ensurePublication, ensureSlot } = lib
  const warehouseName = `${WAREHOUSE}_large_tx`
  const publication = 'pgdk_bench_huge_pub'
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  const source = connect({ url, ssl: { mode: 'disable' } })
  const warehouseUrl = new URL(url)
  warehouseUrl.pathname = `/${warehouseName}`
  const slotOf = (streaming: 'on' | 'off') => `pgdk_bench_huge_${streaming}`
  try {
    for (const streaming of options.streaming) await dropSlot(source, slotOf(streaming))
    await admin.query(`drop database if exists ${warehouseName} with (force)`)
    await admin.query(`create database ${warehouseName}`)
    await admin.query(`drop publication if exists ${publication}`)
    await admin.query('drop table if exists cdc_huge')
    await admin.query('create table cdc_huge (id int primary key, n int not null, filler text not null)')
    await ensurePublication(source, publication, [{ table: 'cdc_huge' }])
    for (const streaming of options.streaming) await ensureSlot(source, slotOf(streaming))
    console.error(`cdc large transaction: writing one transaction of ${options.changes.toLocaleString('en')} inserts ...`)
    // 416 characters of filler: a row of about 440 bytes on the source and in pgoutput's Insert message.
    await admin.query(`insert into cdc_huge select g, g % 1000, repeat(md5(g::text), 13) from generate_series(1, $1::int) g`, [options.changes])
    const [size] = (await admin.query<{ bytes: string }>(`select pg_relation_size('cdc_huge')::text as bytes`)).rows
    const sourceSum = await tableChecksum(admin, 'cdc_huge')
    const runs: CdcLargeTxRun[] = []
    const warehouse = new pg.Client({ connectionString: warehouseUrl.toString() })
    await warehouse.connect()
    try {
      for (const streaming of options.streaming) {
        await admin.query('checkpoint')
        const schema = `bronze_huge_${streaming}`
        const script = fileURLToPath(new URL('./cdc-large-tx.mjs', import.meta.url))
        const { stdout } = await execFile(
          process.execPath,
          [script, url, warehouseUrl.toString(), slotOf(streaming), publication, schema, String(options.changes), streaming],
          { maxBuffer: 1 << 20, env: process.env },
        )
        const measured = JSON.parse(stdout.trim().split('\n').at(-1) as string) as {
          changes: number
          seconds: number
          maxRssBytes: number
          peakHeapBytes: number
          peakExternalBytes: number
          spilledTransactions: number
          cpuSeconds: number
        }
        const bronzeSum = await tableChecksum(warehouse, `${schema}.br_cdc_huge`)
        const logged = await warehouse.query<{ n: number; distinct_changes: number }>(
          `select count(*)::int as n, count(distinct (commit_lsn, seq))::int as distinct_changes from ${schema}.cdc_changes`,
        )
        const exact =
          bronzeSum === sourceSum &&
          logged.rows[0]?.n === options.changes &&
          logged.rows[0]?.distinct_changes === options.changes &&
          measured.changes === options.changes
        const run: CdcLargeTxRun = {
          streaming,
          changes: measured.changes,
          seconds: measured.seconds,
          changesPerSecond: measured.changes / measured.seconds,
          peakRssMb: measured.maxRssBytes / 2 ** 20,
          peakHeapMb: measured.peakHeapBytes / 2 ** 20,
          peakExternalMb: measured.peakExternalBytes / 2 ** 20,
          nodeCpuSeconds: measured.cpuSeconds,
          spilledTransactions: measured.spilledTransactions,
          exact,
        }
        runs.push(run)
        console.error(`  ${formatLargeTxRun(run)}`)
        await dropWhenIdle(admin, slotOf(streaming))
        // The next run's checkpoint and WAL need not carry this one's copies.
        await warehouse.query(`drop schema ${schema} cascade`)
      }
    } finally {
      await warehouse.end()
    }
    return { changes: options.changes, rowBytes: Number(size?.bytes ?? 0) / options.changes, runs }
  } finally {
    for (const streaming of options.streaming) await dropSlot(source, slotOf(streaming)).catch(() => undefined)
    await admin.query('drop table if exists cdc_huge').catch(() => undefined)
    await admin.query(`drop database if exists ${warehouseName} with (force)`).catch(() => undefined)
    await source.close()
    await admin.end()
  }
}

/** Row count and the sum of a hash of each row's data columns: equal means the same rows. */
async function tableChecksum(client: pg.Client, table: string): Promise<string> {
  const { rows } = await client.query<{ sum: string }>(
    `select count(*) || ':' || coalesce(sum(hashtextextended(row(id, n, filler)::text, 0)::numeric), 0) as sum from ${table}`,
  )
  return rows[0]?.sum ?? ''
}

function formatLargeTxRun(run: CdcLargeTxRun): string {
  const met = run.peakRssMb <= CDC_LARGE_TX_RSS_TARGET_MB && run.exact
  return (
    `streaming ${run.streaming.padEnd(3)}: ${run.changes.toLocaleString('en')} changes at ${Math.round(run.changesPerSecond).toLocaleString('en')} changes/s ` +
    `(${run.seconds.toFixed(1)} s, Node CPU ${run.nodeCpuSeconds.toFixed(1)} s); peak RSS ${Math.round(run.peakRssMb)} MB ` +
    `(V8 heap ${Math.round(run.peakHeapMb)}, outside it ${Math.round(run.peakExternalMb)}); ${run.exact ? 'exact' : 'NOT EXACT'}; ` +
    `target <= ${CDC_LARGE_TX_RSS_TARGET_MB} MB: ${met ? 'PASS' : 'FAIL'}`
  )
}

/** The bench's report lines for the CDC memory case. */
export function cdcLargeTxReport(result: CdcLargeTxResult): string[] {
  return [
    `cdc large transaction: one transaction of ${result.changes.toLocaleString('en')} inserts (${Math.round(result.rowBytes)} B a row on disk), captureChanges with apply, in a fresh process`,
    ...result.runs.map((run) => `  ${formatLargeTxRun(run)}`),
  ]
}
