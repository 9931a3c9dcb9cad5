import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import { classifyError, ConfigError, SchemaDriftError, ScaleOutFailedError, SinkWriteError, SourceQueryError } from '../errors.js'
import { describeTable } from '../pg/catalog.js'
import { checkIdentifier, qualifiedName } from '../pg/identifiers.js'
import { checkPartitions, PARTITION_COLUMNS, parallelSource, partitionedSource } from '../sources/parallel.js'
import { targetTableName } from '../sinks/target.js'
import { coordinatorLockKey, runLockKey, stagingSchemaFor, type ScaleOutPiece, type ScaleOutPlan, type ScaleOutTable } from './plan.js'
import { abandonRun, createStaging, ensureRunsTable, runsTable, sweepStaging, takeOverRun } from './staging.js'

const tableSchema = z.strictObject({
  schema: z.string().default('public'),
  table: z.string(),
  columns: z.array(z.string()).nonempty().optional(),
  /** Pieces a plain table is cut into (ctid page ranges); a partitioned table gets one per leaf partition. */
  pieces: z.number().int().min(1).max(10_000).default(8),
  /** Partitioned tables: keep rows whose partition key is in [from, to). */
  from: z.union([z.string(), z.number(), z.bigint()]).transform(String).optional(),
  to: z.union([z.string(), z.number(), z.bigint()]).transform(String).optional(),
  /** The target table; `br_<table>` when absent. */
  target: z.string().optional(),
})

export const runOptionsSchema = z.strictObject({
  /** Names the run in the warehouse's `scale_out_runs`, in job ids and in errors; a random UUID when absent. */
  runId: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[\w.-]+$/, 'letters, digits, _, . and - only (it names jobs and keys)')
    .optional(),
  tables: z.array(tableSchema).nonempty(),
  to: z
    .strictObject({
      schema: z.string().default('bronze'),
      mode: z.enum(['replace', 'append', 'merge']).default('replace'),
      primaryKey: z.array(z.string().min(1)).nonempty().optional(),
    })
    .default({ schema: 'bronze', mode: 'replace' }),
  /** Add the bronze metadata columns (as `bronzeMetadata()` does), at commit, at no cost per row. */
  metadata: z.boolean().default(true),
})

export type RunOptions = z.input<typeof runOptionsSchema>

/** A started run: its plan, and the snapshot and lock the coordinator holds until `close()`. */
export interface StartedRun extends AsyncDisposable {
  readonly plan: ScaleOutPlan
  /** Ends the snapshot's transaction and gives up the coordinator's lock (after the commit, or after a failure). */
  close(): Promise<void>
}

/**
 * The engine-agnostic coordinator: plans a run (each table split into pieces), takes the coordinator's lock in the
 * warehouse, exports one snapshot in the source and holds it, and creates the run's staging area; the returned plan
 * is what every piece (`runPiece`) and the commit (`commitRun`) take. Keep the run open until the commit is done.
 *
 * @example
 * await using run = await startRun(source, warehouse, { tables: [{ table: 'events', pieces: 16 }] })
 * await Promise.all(run.plan.pieces.map((piece) => runPiece(run.plan, piece.id, { source, warehouse })))
 * await commitRun(run.plan, { warehouse })
 */
export async function startRun(source: Connection, warehouse: Connection, options: RunOptions): Promise<StartedRun> {
  const parsed = parseOptions(runOptionsSchema, options)
  checkIdentifier(parsed.to.schema, 'to.schema')
  const runId = parsed.runId ?? randomUUID()
  const startedAt = new Date()
  const staging = stagingSchemaFor(runId, startedAt.toISOString())

  // Planned before anything is held: the plans of every table (pieces, shape), checked for targets that collide.
  const tables = await planTables(source, parsed)

  const lock = await warehouse.acquire()
  let snapshotClient: pg.PoolClient | undefined
  let failed: Error | undefined
  try {
    // The run id's lock: one coordinator per run id. Whoever takes it knows an earlier coordinator of the id is gone.
    const { rows: taken } = await lock.query<{ ok: boolean }>('select pg_try_advisory_lock(hashtextextended($1, 0)) as ok', [runLockKey(runId)])
    if (!taken[0]?.ok) {
      throw new ScaleOutFailedError(`run ${runId} is already running (another coordinator holds it); start a run with another runId`, {
        step: 'sink',
        context: { run: runId },
      })
    }
    // The staging area's lock, which workers and the commit check: free once this coordinator is gone.
    await lock.query('select pg_advisory_lock(hashtextextended($1, 0))', [coordinatorLockKey(staging)])
    await sweepStaging(warehouse)

    snapshotClient = await source.acquire()
    const snapshot = await holdSnapshot(snapshotClient, tables, runId)

    const pieces: ScaleOutPiece[] = []
    for (const table of tables) for (const piece of table.plan.pieces) pieces.push({ id: pieces.length, table: table.index, piece })
    const plan: ScaleOutPlan = Object.freeze({
      version: 1,
      runId,
      startedAt: startedAt.toISOString(),
      source: source.label,
      snapshot,
      staging,
      sink: { schema: parsed.to.schema, mode: parsed.to.mode, primaryKey: parsed.to.primaryKey ?? null, metadata: parsed.metadata },
      tables,
      pieces,
    })

    try {
      await lock.query('begin')
      await ensureRunsTable(lock, plan.sink.schema)
      await takeOverRun(lock, plan)
      const recorded = await lock.query(
        `insert into ${runsTable(plan)} (run_id, status, staging, tables, pieces, started_at) values ($1, 'running', $2, $3, $4, $5)
         on conflict (run_id) do update set status = 'running', staging = excluded.staging, tables = excluded.tables, pieces = excluded.pieces,
           started_at = excluded.started_at, rows = null, bytes = null, finished_at = null, error = null
         where ${runsTable(plan)}.status in ('failed', 'abandoned')
         returning run_id`,
        [runId, staging, tables.map((table) => `${table.plan.schema}.${table.plan.table}`), pieces.length, startedAt],
      )
      if (recorded.rowCount === 0) {
        throw new ScaleOutFailedError(`run ${runId} is already running or committed in ${runsTable(plan)}; start a run with another runId`, {
          step: 'sink',
          context: { run: runId },
        })
      }
      await createStaging(lock, plan)
      await lock.query('commit')
    } catch (error) {
      await lock.query('rollback').catch(() => undefined)
      throw classifyError(error, 'sink', { run: runId }, SinkWriteError)
    }

    let closed = false
    const close = async () => {
      if (closed) return
      closed = true
      await snapshotClient?.query('commit').catch((error: Error) => (failed = error))
      snapshotClient?.release(failed)
      await lock.query('select pg_advisory_unlock_all()').catch((error: Error) => (failed = error))
      lock.release(failed)
    }
    return Object.freeze({ plan, close, [Symbol.asyncDispose]: close })
  } catch (error) {
    failed = error as Error
    snapshotClient?.release(failed)
    lock.release(failed)
    throw error
  }
}

/** Ends a started run that will not commit: its staging area is dropped and the run recorded as failed. */
export async function failRun(warehouse: Connection, run: StartedRun, reason: string): Promise<void> {
  await abandonRun(warehouse, run.plan, 'failed', reason)
}

/**
 * Begins the snapshot's transaction and exports its snapshot, with every table of the run locked in it (ACCESS SHARE,
 * as pg_dump does) until the run ends: TRUNCATE, a rewriting ALTER, REFRESH MATERIALIZED VIEW or DROP wait for the run
 * instead of emptying or replacing what the pieces read. Tables are locked before the snapshot is taken (LOCK takes
 * none); a materialized view cannot be LOCKed, so it is locked by reading it, after the snapshot, and its file checked
 * unchanged since (a REFRESH in between makes another attempt). Then, in the snapshot, each table's shape must be the
 * plan's: a column changed since planning fails the run (SchemaDriftError) rather than being written in the old type.
 */
async function holdSnapshot(client: pg.PoolClient, tables: readonly ScaleOutTable[], runId: string): Promise<string> {
  // Read before the transaction: any query in it would take its snapshot before the locks.
  const kinds: (string | null | undefined)[] = []
  for (const table of tables) {
    const { rows } = await client.query<{ kind: string | null }>(`select relkind::text as kind from pg_class where oid = to_regclass($1)`, [
      qualifiedName(table.plan.schema, table.plan.table),
    ])
    kinds.push(rows[0]?.kind)
  }
  for (let attempt = 1; ; attempt++) {
    await client.query('begin isolation level repeatable read read only')
    const views: ScaleOutTable[] = []
    for (const [index, table] of tables.entries()) {
      const kind = kinds[index]
      if (kind === 'r' || kind === 'p') await client.query(`lock table ${qualifiedName(table.plan.schema, table.plan.table)} in access share mode`)
      else views.push(table)
    }
    const snapshot = (await client.query<{ id: string }>('select pg_export_snapshot() as id')).rows[0]?.id as string
    let refreshed = false
    for (const table of views) {
      const name = qualifiedName(table.plan.schema, table.plan.table)
      await client.query(`select from ${name} limit 0`)
      // relfilenode as of the snapshot against the file now (pg_relation_filenode reads the current catalog).
      const { rows } = await client.query<{ same: boolean }>(`select relfilenode = pg_relation_filenode(oid) as same from pg_class where oid = $1::regclass`, [
        name,
      ])
      if (rows[0]?.same === false) refreshed = true
    }
    if (refreshed) {
      await client.query('rollback')
      if (attempt < 3) continue
      throw new ScaleOutFailedError(`run ${runId}: a materialized view of the run was refreshed while its snapshot was taken, 3 times; start it again`, {
        step: 'source',
        context: { run: runId },
      })
    }
    for (const table of tables) {
      if (table.plan.kind === 'partitioned') await checkPartitions(client, table.plan)
      await checkShape(client, table)
    }
    return snapshot
  }
}

/** In the snapshot: the table's columns (names and types) are still the plan's. */
async function checkShape(client: pg.ClientBase, table: ScaleOutTable): Promise<void> {
  const { schema, table: name } = table.plan
  const planned = table.plan.kind === 'partitioned' ? table.columns.slice(0, -PARTITION_COLUMNS.length) : table.columns
  const now = (await describeTable(client, schema, name, table.plan.columns ?? undefined)).columns
  const drift = planned
    .map((column, index) => ({ column: column.name, bronzeType: column.type, sourceType: now[index]?.name === column.name ? (now[index]?.type ?? '') : '' }))
    .filter((entry) => entry.bronzeType !== entry.sourceType)
  for (const column of now.slice(planned.length)) drift.push({ column: column.name, bronzeType: '', sourceType: column.type })
  if (drift.length === 0) return
  const first = drift[0] as { column: string; bronzeType: string; sourceType: string }
  const what = first.bronzeType === '' ? 'added' : first.sourceType === '' ? 'dropped or moved' : `${first.bronzeType} when planned, ${first.sourceType} now`
  throw new SchemaDriftError(
    `${schema}.${name} changed between the run's plan and its snapshot (column "${first.column}": ${what}${drift.length > 1 ? `; ${drift.length} columns in all` : ''}); nothing was written, start the run again`,
    drift,
    { step: 'source', context: { schema, table: name, column: first.column } },
  )
}

async function planTables(source: Connection, options: z.output<typeof runOptionsSchema>): Promise<ScaleOutTable[]> {
  const tables: ScaleOutTable[] = []
  const targets = new Set<string>()
  for (const [index, wanted] of options.tables.entries()) {
    const partitioned = await isPartitioned(source, wanted.schema, wanted.table)
    if (!partitioned && (wanted.from !== undefined || wanted.to !== undefined)) {
      throw new ConfigError(`tables.${index}.from`, `${wanted.schema}.${wanted.table} is not partitioned: from/to filter partitioned tables only`)
    }
    const common = { schema: wanted.schema, table: wanted.table, ...(wanted.columns ? { columns: wanted.columns } : {}) }
    const planned = partitioned
      ? partitionedSource(source, {
          ...common,
          ...(wanted.from !== undefined ? { from: wanted.from } : {}),
          ...(wanted.to !== undefined ? { to: wanted.to } : {}),
        })
      : parallelSource(source, { ...common, pieces: wanted.pieces })
    const plan = await planned.plan()
    const shape = await planned.shape()
    const target = targetTableName(shape, wanted.target)
    if (targets.has(target)) {
      throw new ConfigError(`tables.${index}.target`, `two tables of the run land in ${options.to.schema}.${target}; give one of them another target`)
    }
    targets.add(target)
    tables.push({ index, plan, columns: shape.columns, origin: shape.origin, primaryKey: shape.primaryKey ?? null, target })
  }
  return tables
}

async function isPartitioned(source: Connection, schema: string, table: string): Promise<boolean> {
  try {
    const { rows } = await source.query<{ kind: string | null }>(
      `select c.relkind::text as kind from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2`,
      [schema, table],
    )
    return rows[0]?.kind === 'p'
  } catch (error) {
    throw classifyError(error, 'source', { schema, table }, SourceQueryError)
  }
}
