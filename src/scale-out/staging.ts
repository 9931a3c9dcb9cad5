import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { checkColumnTypes, createTableSql, ensureSchema, lockForDdl } from '../sinks/warehouse-ddl.js'
import { coordinatorLockKey, type ScaleOutPlan } from './plan.js'

/**
 * The run's staging area in the warehouse: a schema of its own holding one staging table per source table (named
 * like its target, so replace moves it into the sink schema as it is), `pieces` (one row per piece written, committed
 * with the piece's rows: what makes a retried piece a no-op instead of a duplicate) and `plan`.
 */
export async function createStaging(client: pg.ClientBase, plan: ScaleOutPlan): Promise<void> {
  await client.query(`create schema ${quoteIdent(plan.staging)}`)
  await client.query(
    `create table ${qualifiedName(plan.staging, 'pieces')} (piece int primary key, rows bigint, bytes bigint, started_at timestamptz not null default clock_timestamp(), finished_at timestamptz)`,
  )
  await client.query(`create table ${qualifiedName(plan.staging, 'plan')} (run_id text primary key, plan jsonb not null)`)
  await client.query(`insert into ${qualifiedName(plan.staging, 'plan')} values ($1, $2)`, [plan.runId, JSON.stringify(plan)])
  for (const table of plan.tables) {
    await checkColumnTypes(client, table.columns, table.target)
    await client.query(createTableSql(plan.staging, table.target, table.columns))
  }
}

/** Where runs are recorded: `<sink schema>.scale_out_runs`, one row per run, its status moved in the commit's transaction. */
export function runsTable(plan: Pick<ScaleOutPlan, 'sink'>): string {
  return qualifiedName(plan.sink.schema, 'scale_out_runs')
}

export async function ensureRunsTable(client: pg.ClientBase, schema: string): Promise<void> {
  await ensureSchema(client, schema)
  const found = await client.query<{ found: boolean }>('select to_regclass($1) is not null as found', [qualifiedName(schema, 'scale_out_runs')])
  if (found.rows[0]?.found) return
  await lockForDdl(client, schema, 'scale_out_runs')
  await client.query(
    `create table if not exists ${qualifiedName(schema, 'scale_out_runs')} (
       run_id text primary key, status text not null, staging text not null, tables text[] not null, pieces int not null,
       rows bigint, bytes bigint, started_at timestamptz not null, finished_at timestamptz, error text)`,
  )
}

/** True when nobody holds the coordinator's lock: the coordinator is gone. Takes it only for the transaction asked in. */
export async function coordinatorGone(client: pg.ClientBase, staging: string): Promise<boolean> {
  const { rows } = await client.query<{ free: boolean }>('select pg_try_advisory_xact_lock(hashtextextended($1, 0)) as free', [coordinatorLockKey(staging)])
  return rows[0]?.free === true
}

/**
 * Ends a run that will not commit: drops its staging area and records why. Idempotent, so workers, the commit job and
 * the coordinator may all call it; a run already committed is left as it is, and so is a later run of the same run id
 * (its staging schema is another one: only the row of this staging schema is touched).
 */
export async function abandonRun(
  warehouse: Connection,
  plan: Pick<ScaleOutPlan, 'runId' | 'staging' | 'sink'>,
  status: 'failed' | 'abandoned',
  reason: string,
): Promise<void> {
  await warehouse.withClient(async (client) => {
    // A piece still writing holds its staging table; the drop waits for its commit, then nothing of it is left.
    await client.query(`drop schema if exists ${quoteIdent(plan.staging)} cascade`)
    await recordEnded(client, plan.sink.schema, { runId: plan.runId, staging: plan.staging }, status, reason)
  })
}

/**
 * Records a run as ended, if it is still running (a committed run stays committed), in `<sinkSchema>.scale_out_runs`.
 * The run is named by its staging schema (one per start of a run id), and by its run id too where it is known.
 */
async function recordEnded(
  client: pg.ClientBase,
  sinkSchema: string,
  run: { readonly runId?: string; readonly staging: string },
  status: 'failed' | 'abandoned',
  reason: string,
): Promise<void> {
  await client.query(
    `update ${qualifiedName(sinkSchema, 'scale_out_runs')} set status = $1, error = $2, finished_at = clock_timestamp()
      where staging = $3 and status = 'running'${run.runId === undefined ? '' : ' and run_id = $4'}`,
    [status, reason, run.staging, ...(run.runId === undefined ? [] : [run.runId])],
  )
}

/**
 * Removes the staging areas of runs whose coordinator is gone (a SIGKILLed coordinator whose workers never ran again
 * leaves one), and records those runs as abandoned. Run by every coordinator before it starts a run. A staging area
 * that cannot be swept (its plan unreadable, a query failing) is left for the next sweep and never stops the caller.
 */
export async function sweepStaging(warehouse: Connection): Promise<string[]> {
  const { rows } = await warehouse.query<{ schema: string }>(`select nspname as schema from pg_namespace where nspname like 'pgdk\\_run\\_%'`)
  const swept: string[] = []
  for (const { schema } of rows) {
    const gone = await warehouse
      .withClient(async (client) => {
        await client.query('begin')
        try {
          if (!(await coordinatorGone(client, schema))) {
            await client.query('rollback')
            return false
          }
          // The coordinator made the schema and its tables in one transaction: a schema there has its plan (as text:
          // the connection parses json losslessly, so it is parsed here).
          const plan = await client.query<{ run_id: string; plan: unknown }>(`select run_id, plan::text as plan from ${qualifiedName(schema, 'plan')}`)
          // Dropped while the coordinator's lock is ours: no new coordinator can be creating this very schema meanwhile.
          await client.query(`drop schema if exists ${quoteIdent(schema)} cascade`)
          const record = plan.rows[0]
          const sinkSchema = record ? sinkSchemaOf(record.plan) : undefined
          if (record && sinkSchema !== undefined) {
            await recordEnded(
              client,
              sinkSchema,
              { runId: record.run_id, staging: schema },
              'abandoned',
              'the coordinator was gone; its staging area was removed by a later coordinator',
            )
          }
          await client.query('commit')
          // A plan that cannot be read names no sink schema: the run is found by its staging schema instead, in every
          // scale_out_runs there is (each tried on its own: a table of that name may be someone else's).
          if (record && sinkSchema === undefined) await abandonByStaging(client, schema)
          return true
        } catch (error) {
          await client.query('rollback').catch(() => undefined)
          throw error
        }
      })
      .catch(() => false)
    if (gone) swept.push(schema)
  }
  return swept
}

async function abandonByStaging(client: pg.ClientBase, staging: string): Promise<void> {
  const { rows } = await client.query<{ schema: string }>(
    `select n.nspname as schema from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relname = 'scale_out_runs' and c.relkind = 'r'`,
  )
  for (const { schema } of rows) {
    await recordEnded(
      client,
      schema,
      { staging },
      'abandoned',
      'the coordinator was gone; its staging area (its plan unreadable) was removed by a later coordinator',
    ).catch(() => undefined)
  }
}

/** The sink schema a stored plan names, or undefined when the plan cannot be read. */
function sinkSchemaOf(stored: unknown): string | undefined {
  try {
    const plan = (typeof stored === 'string' ? JSON.parse(stored) : stored) as { sink?: { schema?: unknown } } | null
    const schema = plan?.sink?.schema
    return typeof schema === 'string' ? schema : undefined
  } catch {
    return undefined
  }
}

/**
 * Called by a coordinator holding the run id's lock (`runLockKey`), in its transaction: a run of that id still
 * recorded as running has no coordinator (its coordinator would hold that lock), so its staging area is dropped and it
 * is recorded as abandoned; the new run can then start under the same id.
 */
export async function takeOverRun(client: pg.ClientBase, plan: Pick<ScaleOutPlan, 'runId' | 'sink'>): Promise<void> {
  const { rows } = await client.query<{ staging: string }>(`select staging from ${runsTable(plan)} where run_id = $1 and status = 'running' for update`, [
    plan.runId,
  ])
  const old = rows[0]
  if (!old) return
  await client.query(`drop schema if exists ${quoteIdent(old.staging)} cascade`)
  // The row is locked above, still running: matched by its staging schema and run id.
  await recordEnded(
    client,
    plan.sink.schema,
    { runId: plan.runId, staging: old.staging },
    'abandoned',
    'the coordinator was gone; the run was started again under its run id',
  )
}
