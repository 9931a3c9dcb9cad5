import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import { classifyError, ConfigError, ScaleOutFailedError, SinkWriteError, SourceQueryError } from '../errors.js'
import { checkIdentifier } from '../pg/identifiers.js'
import { checkPartitions, parallelSource, partitionedSource } from '../sources/parallel.js'
import { targetTableName } from '../sinks/target.js'
import { coordinatorLockKey, stagingSchemaFor, type ScaleOutPiece, type ScaleOutPlan, type ScaleOutTable } from './plan.js'
import { abandonRun, createStaging, ensureRunsTable, runsTable, sweepStaging } from './staging.js'

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
  const staging = stagingSchemaFor(runId)
  const startedAt = new Date()

  // Planned before anything is held: the plans of every table (pieces, shape), checked for targets that collide.
  const tables = await planTables(source, parsed)

  const lock = await warehouse.acquire()
  let snapshotClient: pg.PoolClient | undefined
  let failed: Error | undefined
  try {
    const { rows: taken } = await lock.query<{ ok: boolean }>('select pg_try_advisory_lock(hashtextextended($1, 0)) as ok', [coordinatorLockKey(staging)])
    if (!taken[0]?.ok) {
      throw new ScaleOutFailedError(`run ${runId} is already running (another coordinator holds it); start a run with another runId`, {
        step: 'sink',
        context: { run: runId },
      })
    }
    await sweepStaging(warehouse)

    snapshotClient = await source.acquire()
    await snapshotClient.query('begin isolation level repeatable read read only')
    for (const table of tables) if (table.plan.kind === 'partitioned') await checkPartitions(snapshotClient, table.plan)
    const snapshot = (await snapshotClient.query<{ id: string }>('select pg_export_snapshot() as id')).rows[0]?.id as string

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
