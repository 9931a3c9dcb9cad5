import type { Connection } from '../connection/connection.js'
import type { RunConstants } from '../contracts.js'
import { classifyError, ConfigError, CoordinatorGoneError, ScaleOutFailedError, SinkWriteError } from '../errors.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { dropForReplace } from '../sinks/postgres.js'
import { addConstantColumns, ensureSchema, lockForDdl, prepareTable, requireUniqueKey, upsertSql } from '../sinks/warehouse-ddl.js'
import { BRONZE_COLUMNS, bronzeValues } from '../transforms/bronze-metadata.js'
import type { ScaleOutPlan, ScaleOutTable } from './plan.js'
import { abandonRun, coordinatorGone, runsTable } from './staging.js'

export interface CommitResult {
  readonly runId: string
  readonly rows: number
  readonly bytes: number
  /** `schema.table` of each table the run loaded. */
  readonly targets: readonly string[]
}

/**
 * Makes a run's rows visible, once every piece is in its staging area: in one warehouse transaction each table is
 * swapped in (replace: the staging table is moved into the sink schema, no row is copied), appended or merged from its
 * staging table, and the run is recorded as committed. Then the staging area is dropped.
 *
 * Refuses, abandoning the run (staging dropped, nothing visible), when the coordinator is gone or a piece is missing.
 *
 * Idempotent: the transaction first locks the run's row in `scale_out_runs`; a run already committed (an earlier call
 * whose caller died or timed out after its COMMIT, or a call at the same time, waited for) returns the recorded result
 * and touches nothing but leftover staging. Only a run still `running` commits.
 */
export async function commitRun(plan: ScaleOutPlan, options: { warehouse: Connection }): Promise<CommitResult> {
  const { warehouse } = options
  const context = { run: plan.runId }
  let refusal: Error | undefined
  const result = await warehouse.withClient(async (client) => {
    await client.query('begin')
    try {
      // The run's row, locked until this transaction ends: a second commit waits here, then finds it committed.
      const { rows: records } = await client.query<{ status: string; staging: string; rows: string | null; bytes: string | null }>(
        `select status, staging, rows::text as rows, bytes::text as bytes from ${runsTable(plan)} where run_id = $1 for update`,
        [plan.runId],
      )
      const record = records[0]
      if (record?.staging === plan.staging && record.status === 'committed') {
        await client.query('rollback')
        return resultOf(plan, record.rows ?? 0, record.bytes ?? 0)
      }
      if (record?.staging !== plan.staging || record.status !== 'running') {
        refusal =
          record?.staging === plan.staging
            ? new ScaleOutFailedError(`run ${plan.runId} was already ended (${record.status}): this commit made nothing visible`, { step: 'sink', context })
            : // A stale job of a run whose coordinator died: the run id was started again (or is unknown here).
              new CoordinatorGoneError(
                `the coordinator of run ${plan.runId} is gone and the run was started again by another coordinator (or is unknown): this commit made nothing visible`,
                { step: 'sink', context },
              )
        await client.query('rollback')
        return undefined
      }
      // Taken for this transaction when free: a coordinator that dies from here on no longer matters, the run commits.
      if (await coordinatorGone(client, plan.staging).catch(() => true)) {
        refusal = new CoordinatorGoneError(`the coordinator of run ${plan.runId} is gone: the run was abandoned, nothing became visible; start it again`, {
          step: 'sink',
          context,
        })
        await client.query('rollback')
        return undefined
      }
      const { rows: done } = await client.query<{ pieces: number; rows: string; bytes: string }>(
        `select count(*)::int as pieces, coalesce(sum(rows), 0)::text as rows, coalesce(sum(bytes), 0)::text as bytes
           from ${qualifiedName(plan.staging, 'pieces')} where finished_at is not null`,
      )
      const summary = done[0] as { pieces: number; rows: string; bytes: string }
      if (summary.pieces !== plan.pieces.length) {
        refusal = new ScaleOutFailedError(
          `run ${plan.runId} has ${summary.pieces} of its ${plan.pieces.length} pieces: nothing became visible; start it again`,
          {
            step: 'sink',
            context,
          },
        )
        await client.query('rollback')
        return undefined
      }
      await ensureSchema(client, plan.sink.schema)
      for (const table of plan.tables) await commitTable(client, plan, table)
      await client.query(
        `update ${runsTable(plan)} set status = 'committed', rows = $2, bytes = $3, finished_at = clock_timestamp() where run_id = $1 and staging = $4`,
        [plan.runId, summary.rows, summary.bytes, plan.staging],
      )
      await client.query('commit')
      return resultOf(plan, summary.rows, summary.bytes)
    } catch (error) {
      await client.query('rollback').catch(() => undefined)
      throw classifyError(error, 'sink', context, SinkWriteError)
    }
  })
  if (!result) {
    const error = refusal ?? new ScaleOutFailedError(`run ${plan.runId} was refused`, { step: 'sink', context })
    await abandonRun(warehouse, plan, error instanceof CoordinatorGoneError ? 'abandoned' : 'failed', error.message)
    throw error
  }
  // After the commit (or on finding it done): a failure here leaves a staging schema that the next coordinator sweeps.
  await warehouse.query(`drop schema if exists ${quoteIdent(plan.staging)} cascade`).catch(() => undefined)
  return result
}

/**
 * The recorded result of a run that `scale_out_runs` says committed (this run: its staging schema), or undefined. For
 * a caller whose commit failed in a way that does not say whether it committed (the job engine lost track of it).
 */
export async function committedResult(plan: ScaleOutPlan, warehouse: Connection): Promise<CommitResult | undefined> {
  const { rows } = await warehouse.query<{ rows: string; bytes: string }>(
    `select rows::text as rows, bytes::text as bytes from ${runsTable(plan)} where run_id = $1 and staging = $2 and status = 'committed'`,
    [plan.runId, plan.staging],
  )
  const record = rows[0]
  return record ? resultOf(plan, record.rows, record.bytes) : undefined
}

/** A committed run's result: its counts (as `scale_out_runs` keeps them, bigint text) and every table it loaded. */
function resultOf(plan: ScaleOutPlan, rows: string | number, bytes: string | number): CommitResult {
  return { runId: plan.runId, rows: Number(rows), bytes: Number(bytes), targets: plan.tables.map((table) => `${plan.sink.schema}.${table.target}`) }
}

/** One table's rows made visible, in the commit's transaction, as `postgresSink` does for its mode. */
async function commitTable(client: Parameters<typeof ensureSchema>[0], plan: ScaleOutPlan, table: ScaleOutTable): Promise<void> {
  const { schema, mode } = plan.sink
  const staging = qualifiedName(plan.staging, table.target)
  const constants: RunConstants | undefined = plan.sink.metadata
    ? { columns: BRONZE_COLUMNS, values: bronzeValues({ origin: table.origin, columns: table.columns }, { startedAt: new Date(plan.startedAt) }) }
    : undefined
  // Constant columns cost nothing per row: a fast default stored once in the catalog (see addConstantColumns).
  if (constants) await addConstantColumns(client, plan.staging, table.target, constants)
  const columns = constants ? [...table.columns, ...constants.columns] : table.columns
  const context = { schema, table: table.target, mode, run: plan.runId }
  if (mode === 'replace') {
    await lockForDdl(client, schema, table.target)
    await dropForReplace(client, schema, table.target, context)
    await client.query(`alter table ${staging} set schema ${quoteIdent(schema)}`)
  } else if (mode === 'append') {
    await prepareTable(client, schema, table.target, columns, undefined, context)
    const list = columns.map((column) => quoteIdent(column.name)).join(', ')
    await client.query(`insert into ${qualifiedName(schema, table.target)} (${list}) select ${list} from ${staging}`)
  } else {
    const key = plan.sink.primaryKey ?? table.primaryKey
    if (!key?.length) throw new ConfigError('primaryKey', `merge needs a primary key: ${table.plan.schema}.${table.plan.table} has none; pass to.primaryKey`)
    await prepareTable(client, schema, table.target, columns, key, context)
    await requireUniqueKey(client, schema, table.target, key)
    await client.query(upsertSql(qualifiedName(schema, table.target), staging, columns, key))
  }
}
