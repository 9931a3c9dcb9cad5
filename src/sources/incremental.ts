import type pg from 'pg'
import Cursor from 'pg-cursor'
import { sql, type RawBuilder, type SqlBool } from 'kysely'
import { z } from 'zod'
import type { Checkpoint, CheckpointScope, CheckpointStore } from '../checkpoints/checkpoint.js'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import type { Batch, OpenContext, OpenedSource, RunContext, Shape, Source } from '../contracts.js'
import { classifyError, ConfigError, SourceQueryError, UnknownColumnError, UnsupportedTypeError } from '../errors.js'
import { databaseIdentity } from '../pg/database-identity.js'
import { checkIdentifier, qualifiedName } from '../pg/identifiers.js'
import { takeLease, type Lease } from '../pg/lease.js'
import { rowXidDistance } from '../pg/row-xid.js'
import { builder } from '../pg/sql-builder.js'
import { cursorRows } from '../pg/cursor-rows.js'
import { cursorBatches } from './cursor-reader.js'
import { describeTableShape } from './describe.js'
import { filterColumns, filterText, tableFilterSchema, withFilter } from './select-query.js'

const incrementalSchema = z.strictObject({
  schema: z.string().default('public'),
  table: z.string(),
  /** The column whose growing values mark new and changed rows: a timestamp, a date, a number, any orderable type. */
  cursorColumn: z.string(),
  /**
   * Bounds the search for late rows (docs/incremental.md): an interval (`'10 minutes'`) for time cursors, a number
   * for numeric ones. Without it every run finds late rows at any cursor value, reading the whole table; with it a
   * run reads only rows at or above `checkpoint - lookback` (through an index on the cursor), and a late row below
   * that is missed.
   */
  lookback: z.union([z.string().min(1), z.number().nonnegative()]).optional(),
  /** Primary key for merge sinks; read from the catalog when absent. */
  primaryKey: z.array(z.string()).nonempty().optional(),
  columns: z.array(z.string()).nonempty().optional(),
  where: tableFilterSchema.optional(),
  /**
   * Names this pipeline's checkpoint. Without it the checkpoint is keyed by the source database, the table, the
   * columns, the filter and the sink's target, so two pipelines from one table never share one.
   */
  name: z.string().min(1).optional(),
  /** Where checkpoints live; the sink's store (the warehouse's `bronze.extraction_checkpoints`) when absent. */
  checkpoints: z.custom<CheckpointStore>((value) => typeof (value as CheckpointStore | undefined)?.read === 'function').optional(),
  /**
   * Leave rows of transactions in flight at the run's snapshot (and younger ones) to later runs (default true). `false`
   * delivers what is committed at once but loses rows of transactions that commit later with covered cursor values.
   */
  capInFlight: z.boolean().default(true),
  batchSize: z.number().int().positive().max(1_000_000).default(1_000),
  maxBatchBytes: z
    .number()
    .int()
    .positive()
    .default(16 * 1024 * 1024),
})

export type IncrementalSourceOptions = z.input<typeof incrementalSchema>

/** What an incremental source tells `extract()`: its cursor and the store it was given. */
export interface IncrementalInfo {
  readonly cursorColumn: string
  readonly checkpoints: CheckpointStore | undefined
}

export interface IncrementalSource extends Source {
  readonly incremental: IncrementalInfo
  open(ctx?: OpenContext): Promise<OpenedSource>
}

interface CursorFacts {
  /** The cursor column's source type, as the server prints it (used in casts). */
  readonly type: string
  readonly orderable: boolean
  readonly isTime: boolean
}

/** A run's plan, read in its snapshot. */
interface RunPlan {
  readonly snapshot: string
  /** The snapshot's xmax: the reference that gives rows' xmin its epoch. */
  readonly xmax: string
  readonly horizon: string
  /** The previous checkpoint's horizon (from its snapshot for checkpoints made before horizons were kept). */
  readonly previousHorizon: string | null
  /** Rows at or above this are searched for late rows (lookback); null: at any value. */
  readonly lateFrom: string | null
  readonly upper: string | null
  /** The table and its partitions or inheritance children, at the snapshot. */
  readonly relations: readonly number[]
  /** Those the previous checkpoint did not know (attached since): none of their rows is covered. */
  readonly newRelations: readonly number[]
}

/**
 * Extracts only rows that are new or changed since the last run, by a cursor column, with checkpoints that commit
 * in the same transaction as the rows they cover (docs/incremental.md). No row is lost to late commits, savepoints,
 * equal cursor values or NULL cursors; none is delivered twice (the same row version).
 *
 * @example
 * await extract({
 *   from: incrementalSource(source, { table: 'orders', cursorColumn: 'updated_at' }),
 *   through: [bronzeMetadata()],
 *   to: postgresSink(warehouse, { mode: 'merge' }),
 * })
 */
export function incrementalSource(connection: Connection, options: IncrementalSourceOptions): IncrementalSource {
  const parsed = parseOptions(incrementalSchema, options)
  const { schema, table, cursorColumn, lookback, columns, where, batchSize, maxBatchBytes, capInFlight } = parsed
  checkIdentifier(schema, 'schema')
  checkIdentifier(table, 'table')
  checkIdentifier(cursorColumn, 'cursorColumn')
  columns?.forEach((column, index) => checkIdentifier(column, `columns.${index}`))
  const context = { schema, table, cursorColumn }

  const describe = async (ctx: Partial<RunContext>): Promise<Shape> => {
    const { kind, ...shape } = await describeTableShape(connection, { schema, table, columns, filterColumns: filterColumns(where) }, 'incremental', ctx)
    if (kind !== 'r' && kind !== 'p') {
      throw new ConfigError('table', `"${schema}"."${table}" is not a table; incremental extraction reads row versions (xmin) of tables`)
    }
    // The table's primary key comes with its shape (when every key column is read); an option overrides it.
    return parsed.primaryKey ? { ...shape, primaryKey: parsed.primaryKey } : shape
  }

  /**
   * Plans the run once, in one REPEATABLE READ snapshot held on one leased client until `close()`: the bounds, the
   * checkpoint and the rows all describe that snapshot.
   */
  async function open(ctx: OpenContext = {}): Promise<OpenedSource> {
    const shape = await describe(ctx)
    let facts: CursorFacts
    let scope: CheckpointScope
    let previous: Checkpoint | undefined
    try {
      ;({ facts, scope } = await connection.withClient(async (client) => {
        const found = await cursorFacts(client, schema, table, cursorColumn)
        if (!found.orderable) {
          throw new UnsupportedTypeError(`cursor column "${cursorColumn}" has type ${found.type}, which has no ordering`, { step: 'source', context })
        }
        if (lookback !== undefined) await checkLookback(client, found, lookback)
        // The columns the user chose, not those the table has now: a column added at the source is the same pipeline.
        const columnNames = columns ? [...columns].sort() : ['*']
        return {
          facts: found,
          scope: { source: await databaseIdentity(client), schema, table, columns: columnNames, filter: filterText(where), name: parsed.name },
        }
      }, ctx.signal))
      // Read before this run holds a client: the store may live on the same pool.
      previous = await ctx.previousCheckpoint?.(scope, shape)
    } catch (error) {
      throw classifyError(error, 'source', context, SourceQueryError)
    }
    if (previous && previous.cursorColumn !== cursorColumn) {
      throw new ConfigError(
        'cursorColumn',
        `the checkpoint of ${schema}.${table} was made with cursor column "${previous.cursorColumn}"; delete it to start over with "${cursorColumn}"`,
      )
    }
    const lease = await takeLease(connection, ctx.signal, context)
    try {
      // Read before the snapshot: a transaction listed here and in flight at the snapshot is placed for sure; one that
      // ends in between is not in the snapshot at all. (Read after it, one that ended meanwhile could not be placed.)
      const elsewhere = capInFlight ? await transactionsElsewhere(lease.client) : []
      lease.busy()
      await lease.client.query('begin isolation level repeatable read read only')
      const plan = await planRun(lease.client, facts, previous, elsewhere)
      const now = new Date().toISOString()
      const next: Checkpoint = Object.freeze({
        cursorColumn,
        value: plan.upper,
        lower: previous ? (plan.lateFrom ?? previous.value) : null,
        horizon: plan.horizon,
        relations: plan.relations,
        snapshot: plan.snapshot,
        runId: ctx.runId ?? 'standalone',
        rows: 0,
        status: 'committed' as const,
        startedAt: now,
        updatedAt: now,
      })
      return openedRun(lease, shape, facts, plan, previous, Object.freeze({ scope, previous, next }))
    } catch (error) {
      lease.release()
      throw lease.aborted ?? classifyError(error, 'source', context, SourceQueryError)
    }
  }

  function openedRun(
    lease: Lease,
    shape: Shape,
    facts: CursorFacts,
    plan: RunPlan,
    previous: Checkpoint | undefined,
    checkpoint: NonNullable<OpenedSource['checkpoint']>,
  ): OpenedSource {
    let started = false
    async function* batches(): AsyncGenerator<Batch> {
      if (started) throw new ConfigError('batches', 'an opened incremental run is read once; open the source again')
      started = true
      const { client } = lease
      try {
        const query = rowsQuery(shape, facts, plan, previous)
        const { config, row } = cursorRows(shape.columns)
        const cursor = client.query(new Cursor<unknown[]>(query.sql, [...query.parameters], config))
        yield* cursorBatches(cursor, batchSize, maxBatchBytes, row)
        await cursor.close()
        await client.query('commit')
        lease.idle()
      } catch (error) {
        throw lease.aborted ?? classifyError(error, 'source', context, SourceQueryError)
      }
    }
    const close = async () => lease.release()
    return Object.freeze({ shape, checkpoint, batches, close, [Symbol.asyncDispose]: close })
  }

  /** The run's snapshot, horizon and upper bound. */
  async function planRun(client: pg.ClientBase, facts: CursorFacts, previous: Checkpoint | undefined, elsewhere: readonly string[]): Promise<RunPlan> {
    // The horizon: the oldest transaction in flight at the snapshot, leaving out those that cannot write this table
    // (`elsewhere`; on a shared server they would stall every extraction). One not known there counts: a short
    // stall, never a loss. Subtransactions need no care: a subtransaction's xid is larger than its parent's, so it is
    // at or above the horizon while its parent runs. In-flight xids are within 2^31 of each other: their low 32 bits
    // name them.
    const snapshotXmax = sql`pg_snapshot_xmax(s.s)::text::numeric`
    const horizon = capInFlight
      ? sql`coalesce((select min(x::text::numeric) from pg_snapshot_xip(s.s) x
                       where (x::text::numeric % 4294967296)::bigint <> all(cast(${`{${elsewhere.join(',')}}`} as bigint[]))),
                     ${snapshotXmax})`
      : snapshotXmax
    const snapshot = await run<{ snapshot: string; xmax: string; horizon: string; previous_horizon: string | null }>(
      client,
      sql`with s as (select pg_current_snapshot() as s)
          select s.s::text as snapshot, ${snapshotXmax}::text as xmax, ${horizon}::text as horizon,
                 coalesce(${previous?.horizon || null}::text, pg_snapshot_xmin(cast(${previous?.snapshot ?? null}::text as pg_snapshot))::text) as previous_horizon
            from s`,
    )
    const { snapshot: text, xmax, horizon: found, previous_horizon: previousHorizon } = snapshot[0] as (typeof snapshot)[number]
    // Never below the previous horizon: a transaction of this database in flight now with an older xid was in flight
    // then and held that horizon down. A lower one comes from a transaction placed in this database only now (another
    // database's, prepared since: PREPARE leaves pg_stat_activity), and would deliver again what the last run did.
    const runHorizon = previousHorizon !== null && BigInt(previousHorizon) > BigInt(found) ? previousHorizon : found
    const C = sql.id(cursorColumn)
    const type = sql.raw(facts.type)
    const previousValue = previous?.value ?? null
    let lateFrom: string | null = null
    if (previous && previousValue !== null && lookback !== undefined) {
      const shifted = await run<{ from: string }>(client, sql`select ${backBy(facts, previousValue, lookback)}::text as from`)
      lateFrom = shifted[0]?.from ?? previousValue
    }
    // Only rows below the horizon count towards the upper bound: those are the rows this run delivers. The largest
    // by ORDER BY ... LIMIT 1, not max(): every btree-ordered type sorts (uuid, bool, ranges have no max()), and an
    // index on the cursor is read backwards.
    const reference = BigInt(xmax)
    const bounds = await run<{ upper: string }>(
      client,
      sql`select ${C}::text as upper from ${sql.id(schema, table)}
           where ${C} is not null and ${rowXidDistance(reference)} > ${sql.lit(reference - BigInt(runHorizon))}
             ${previousValue === null ? sql`` : sql`and ${C} > cast(${previousValue} as ${type})`}
           order by ${C} desc limit 1`,
    )
    const tree = await run<{ oid: string }>(
      client,
      sql`with recursive tree(oid) as (select cast(${qualifiedName(schema, table)} as regclass)::oid
                                        union all select i.inhrelid from pg_inherits i join tree t on i.inhparent = t.oid)
          select oid::text as oid from tree order by oid`,
    )
    const relations = tree.map((row) => Number(row.oid))
    const known = previous?.relations
    return {
      snapshot: text,
      xmax,
      horizon: runHorizon,
      previousHorizon: previous ? previousHorizon : null,
      lateFrom,
      upper: bounds[0]?.upper ?? previousValue,
      relations,
      newRelations: known ? relations.filter((oid) => !known.includes(oid)) : [],
    }
  }

  /**
   * The rows of the run: written below this run's horizon, with a cursor at most the upper bound or NULL, and not
   * covered by the previous checkpoint (written at or above its horizon, or with a cursor above its value).
   */
  function rowsQuery(shape: Shape, facts: CursorFacts, plan: RunPlan, previous: Checkpoint | undefined) {
    const C = sql.id(cursorColumn)
    const type = sql.raw(facts.type)
    const cast = (value: string | null) => sql`cast(${value} as ${type})`
    // Rows are placed against the horizons by their distance back from this run's xmax (bigint arithmetic per row).
    const reference = BigInt(plan.xmax)
    const distance = rowXidDistance(reference)
    const belowHorizon = sql<SqlBool>`${distance} > ${sql.lit(reference - BigInt(plan.horizon))}`
    const upTo = plan.upper === null ? sql<SqlBool>`false` : sql<SqlBool>`${C} <= ${cast(plan.upper)}`
    let wanted: RawBuilder<SqlBool>
    if (!previous) {
      wanted = sql<SqlBool>`(${upTo} or ${C} is null)`
    } else {
      const newValues = previous.value === null ? upTo : sql<SqlBool>`(${C} > ${cast(previous.value)} and ${upTo})`
      const late = plan.lateFrom === null ? upTo : sql<SqlBool>`(${C} >= ${cast(plan.lateFrom)} and ${upTo})`
      const lateRows = sql<SqlBool>`(${distance} <= ${sql.lit(reference - BigInt(plan.previousHorizon ?? '0'))} and (${late} or ${C} is null))`
      // Rows of a relation attached since keep their old xids and values: nothing covers them.
      const attached = plan.newRelations.length
        ? sql<SqlBool>` or (tableoid = any(${sql.lit(`{${plan.newRelations.join(',')}}`)}::oid[]) and (${upTo} or ${C} is null))`
        : sql``
      wanted = sql<SqlBool>`(${newValues} or ${lateRows}${attached})`
    }
    const query = builder
      .selectFrom(sql`${sql.id(schema, table)}`.as(table))
      .select(shape.columns.map((column) => sql.id(column.name).as(column.name)))
      .where(sql<SqlBool>`${belowHorizon} and ${wanted}`)
    return withFilter(query, where).compile()
  }

  async function* iterate(ctx: OpenContext = {}): AsyncGenerator<Batch> {
    const opened = await open(ctx)
    try {
      yield* opened.batches()
    } finally {
      await opened.close()
    }
  }

  return Object.freeze({
    name: `incremental ${schema}.${table} by ${cursorColumn}`,
    incremental: { cursorColumn, checkpoints: parsed.checkpoints },
    open,
    shape: () => describe({}),
    batches: iterate,
    [Symbol.asyncIterator]: () => iterate(),
  })
}

/**
 * The 32-bit ids of transactions in flight that cannot write the source table: those of backends connected to other
 * databases, transactions prepared in other databases (no backend), and autovacuum workers (they write catalogs only).
 */
async function transactionsElsewhere(client: pg.ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ xid: string }>(
    `select backend_xid::text as xid from pg_stat_activity
      where backend_xid is not null and (datname is distinct from current_database() or backend_type = 'autovacuum worker')
     union all
     select transaction::text from pg_prepared_xacts where database is distinct from current_database()`,
  )
  return rows.map((row) => row.xid)
}

async function run<R>(client: pg.ClientBase, query: RawBuilder<unknown>): Promise<R[]> {
  const compiled = query.compile(builder)
  const result = await client.query({ text: compiled.sql, values: [...compiled.parameters] })
  return result.rows as R[]
}

/**
 * The cursor column's type as the run compares and casts it: a domain's base type (a domain NOT NULL would refuse
 * the NULL casts of a first run; comparisons are the base type's anyway), and whether it has a default btree ordering.
 */
async function cursorFacts(client: pg.ClientBase, schema: string, table: string, column: string): Promise<CursorFacts> {
  const { rows } = await client.query<{ type: string; orderable: boolean; is_time: boolean }>(
    `with recursive base(oid, typmod, depth) as (
       select a.atttypid, a.atttypmod, 0
         from pg_attribute a join pg_class r on r.oid = a.attrelid join pg_namespace n on n.oid = r.relnamespace
        where n.nspname = $1 and r.relname = $2 and a.attname = $3 and a.attnum > 0 and not a.attisdropped
       union all
       select t.typbasetype, t.typtypmod, b.depth + 1 from base b join pg_type t on t.oid = b.oid where t.typbasetype <> 0)
     select format_type(t.oid, b.typmod) as type,
            exists (select 1 from pg_opclass c join pg_am am on am.oid = c.opcmethod
                     where am.amname = 'btree' and c.opcdefault
                       and c.opcintype = any(array[t.oid, case t.typcategory when 'A' then 'anyarray'::regtype::oid
                             when 'E' then 'anyenum'::regtype::oid when 'R' then 'anyrange'::regtype::oid end])) as orderable,
            t.typcategory = 'D' as is_time
       from (select * from base order by depth desc limit 1) b join pg_type t on t.oid = b.oid`,
    [schema, table, column],
  )
  const row = rows[0]
  if (!row) {
    throw new UnknownColumnError(`table "${schema}"."${table}" has no cursor column "${column}"`, {
      step: 'source',
      context: { schema, table, column },
    })
  }
  return { type: row.type, orderable: row.orderable, isTime: row.is_time }
}

/** A lookback the cursor's type can subtract, and whose result is of that type, or a ConfigError before anything runs. */
async function checkLookback(client: pg.ClientBase, facts: CursorFacts, lookback: string | number): Promise<void> {
  if (facts.isTime !== (typeof lookback === 'string')) {
    throw new ConfigError(
      'lookback',
      facts.isTime ? `the cursor is ${facts.type}: give lookback as an interval, e.g. '10 minutes'` : `the cursor is ${facts.type}: give lookback as a number`,
    )
  }
  if (typeof lookback === 'string') {
    try {
      await client.query('select $1::interval', [lookback])
    } catch (cause) {
      throw new ConfigError('lookback', `"${lookback}" is not an interval PostgreSQL understands`, { cause })
    }
  }
  try {
    await run(client, sql`select ${backBy(facts, null, lookback)}`)
  } catch (cause) {
    throw new ConfigError(
      'lookback',
      `a cursor of type ${facts.type} cannot go back by ${typeof lookback === 'string' ? 'an interval' : 'a number'}: leave lookback out`,
      { cause },
    )
  }
}

/** `value - lookback`, in the cursor's type: where a run's search for late rows starts. */
function backBy(facts: CursorFacts, value: string | null, lookback: string | number): RawBuilder<unknown> {
  const type = sql.raw(facts.type)
  return sql`(cast(${value} as ${type}) - cast(${String(lookback)} as ${sql.raw(typeof lookback === 'string' ? 'interval' : 'numeric')}))::${type}`
}
