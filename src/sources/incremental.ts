import type pg from 'pg'
import Cursor from 'pg-cursor'
import { z } from 'zod'
import type { CheckpointProposal, CheckpointStore } from '../checkpoints/checkpoint.js'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import type { Batch, Row, RunContext, Shape, Source } from '../contracts.js'
import {
  AbortedError,
  classifyError,
  ConfigError,
  SourceQueryError,
  UnknownColumnError,
  UnsupportedTypeError,
} from '../errors.js'
import { destroyClient } from '../pg/client-control.js'
import { checkIdentifier, qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { rowVisibleInSql, rowXid8Sql, xid8Sql } from '../pg/row-xid.js'
import { typeParsersFor } from '../pg/type-parsers.js'
import { builder } from '../pg/sql-builder.js'
import { cursorBatches } from './cursor-reader.js'
import { describeTableShape } from './describe.js'
import { sql, type SqlBool } from 'kysely'
import { filterColumns, tableFilterSchema, withFilter } from './select-query.js'

const incrementalSchema = z.strictObject({
  schema: z.string().default('public'),
  table: z.string(),
  /** The column whose growing values mark new and changed rows: a timestamp, a date, a number, any orderable type. */
  cursorColumn: z.string(),
  /** Re-read this far below the checkpoint: an interval (`'10 minutes'`) for time cursors, a number for numeric ones. */
  lookback: z.union([z.string().min(1), z.number().nonnegative()]).optional(),
  /** Primary key for merge sinks; read from the catalog when absent. */
  primaryKey: z.array(z.string()).nonempty().optional(),
  columns: z.array(z.string()).nonempty().optional(),
  where: tableFilterSchema.optional(),
  /** Where checkpoints live; the sink's store (the warehouse's `bronze.extraction_checkpoints`) when absent. */
  checkpoints: z.custom<CheckpointStore>((value) => typeof (value as CheckpointStore | undefined)?.read === 'function').optional(),
  /**
   * Cap each run's upper bound below rows of transactions still in flight at its snapshot (default true), so that
   * their rows, committed later, are not left behind the checkpoint. See docs/incremental.md.
   */
  capInFlight: z.boolean().default(true),
  batchSize: z.number().int().positive().max(1_000_000).default(1_000),
  maxBatchBytes: z.number().int().positive().default(16 * 1024 * 1024),
})

export type IncrementalSourceOptions = z.input<typeof incrementalSchema>

/** What an incremental source tells `extract()` so it can find and commit checkpoints. */
export interface IncrementalInfo {
  readonly key: { source: string; schema: string; table: string }
  readonly cursorColumn: string
  readonly checkpoints: CheckpointStore | undefined
}

export interface IncrementalSource extends Source {
  readonly incremental: IncrementalInfo
}

interface CursorFacts {
  /** The cursor column's source type, as the server prints it (used in casts). */
  readonly type: string
  readonly orderable: boolean
  readonly isTime: boolean
}

/**
 * Extracts only rows that are new or changed since the last run, by a cursor column, with checkpoints that commit
 * in the same transaction as the rows they cover (docs/incremental.md).
 *
 * @example
 * await extract({
 *   from: incrementalSource(source, { table: 'orders', cursorColumn: 'updated_at', lookback: '5 minutes' }),
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
  const context = { schema, table, cursorColumn }

  const describe = async (ctx: Partial<RunContext>): Promise<Shape & { facts: CursorFacts }> => {
    const { kind, ...shape } = await describeTableShape(
      connection,
      { schema, table, columns, filterColumns: filterColumns(where) },
      'incremental',
      ctx,
    )
    if (kind !== 'r' && kind !== 'p') {
      throw new ConfigError('table', `"${schema}"."${table}" is not a table; incremental extraction reads row versions (xmin) of tables`)
    }
    try {
      return await connection.withClient(async (client) => {
        const facts = await cursorFacts(client, schema, table, cursorColumn)
        if (!facts.orderable) {
          throw new UnsupportedTypeError(`cursor column "${cursorColumn}" has type ${facts.type}, which has no ordering`, {
            step: 'source',
            context,
          })
        }
        if (lookback !== undefined) await checkLookback(client, facts, lookback)
        // The table's primary key comes with its shape (when every key column is read); an option overrides it.
        return { ...shape, ...(parsed.primaryKey ? { primaryKey: parsed.primaryKey } : {}), facts }
      }, ctx.signal)
    } catch (error) {
      throw classifyError(error, 'source', context, SourceQueryError)
    }
  }

  async function* batches(ctx: Partial<RunContext> = {}): AsyncGenerator<Batch> {
    const { facts, ...shape } = await describe(ctx)
    const proposal = ctx.checkpoint
    const previous = proposal?.previous
    if (previous && previous.cursorColumn !== cursorColumn) {
      throw new ConfigError(
        'cursorColumn',
        `the checkpoint of ${schema}.${table} was made with cursor column "${previous.cursorColumn}"; delete it to start over with "${cursorColumn}"`,
      )
    }
    const client = await connection.acquire(ctx.signal)
    let broken: unknown
    const onAbort = () => {
      broken = new AbortedError('extraction aborted', { step: 'source', context })
      destroyClient(client)
    }
    ctx.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      // One snapshot for the bounds and the rows: what the checkpoint says is exactly what was read.
      await client.query('begin isolation level repeatable read read only')
      const plan = await planRun(client, facts, previous ?? undefined)
      const started = new Date().toISOString()
      let rows = 0
      const next = () => ({
        cursorColumn,
        value: plan.upper,
        lower: plan.lower,
        snapshot: plan.snapshot,
        runId: ctx.runId ?? 'standalone',
        rows,
        status: 'committed' as const,
        startedAt: started,
        updatedAt: new Date().toISOString(),
      })
      if (proposal) proposal.next = next()
      const query = rowsQuery(shape, facts, plan, previous ?? undefined)
      const cursor = client.query(new Cursor<Row>(query.sql, [...query.parameters], { types: typeParsersFor(shape.columns) } as Cursor.CursorQueryConfig))
      for await (const batch of cursorBatches(cursor, batchSize, maxBatchBytes)) {
        rows += batch.rows.length
        yield batch
      }
      await cursor.close()
      await client.query('commit')
      if (proposal) proposal.next = next()
    } catch (error) {
      broken ??= error
      throw broken instanceof AbortedError ? broken : classifyError(error, 'source', context, SourceQueryError)
    } finally {
      ctx.signal?.removeEventListener('abort', onAbort)
      client.release(broken ? (broken instanceof Error ? broken : new Error(String(broken))) : undefined)
    }
  }

  /** The run's snapshot and range: (lower, upper], upper capped below in-flight transactions. */
  async function planRun(client: pg.ClientBase, facts: CursorFacts, previous: CheckpointProposal['previous']) {
    // The cap: the oldest transaction in flight at the snapshot, leaving out those known to run in another database
    // (they cannot write this table; on a shared server they would stall every extraction). One that ended since the
    // snapshot cannot be placed, so it counts: a short stall, never a loss.
    const snapshot = await client.query<{ snapshot: string; xmin: string; xmax: string }>(
      `with s as (select pg_current_snapshot() as s)
       select s.s::text as snapshot, pg_snapshot_xmax(s.s)::text as xmax,
              coalesce((select min(x::text::numeric) from pg_snapshot_xip(s.s) x
                         where not exists (select 1 from pg_stat_activity a
                                            where a.backend_xid is not null and a.datname is distinct from current_database()
                                              and ${xid8Sql('pg_snapshot_xmax(s.s)::text::numeric', 'a.backend_xid')} = x::text::numeric)),
                       pg_snapshot_xmax(s.s)::text::numeric)::text as xmin
         from s`,
    )
    const { snapshot: text, xmin, xmax } = snapshot.rows[0] as { snapshot: string; xmin: string; xmax: string }
    let lower: string | null = previous?.value ?? null
    if (lower !== null && lookback !== undefined) {
      const shifted = await client.query<{ lower: string }>(
        `select (cast($1 as ${facts.type}) - cast($2 as ${facts.isTime ? 'interval' : 'numeric'}))::${facts.type}::text as lower`,
        [lower, String(lookback)],
      )
      lower = shifted.rows[0]?.lower ?? lower
    }
    const C = quoteIdent(cursorColumn)
    // Only rows written by transactions older than the snapshot's xmin count towards the upper bound: rows of
    // transactions still in flight may carry lower cursor values when they commit.
    const cap = capInFlight ? `filter (where ${rowXid8Sql('$3::numeric')} < $4::numeric)` : ''
    const bounds = await client.query<{ upper: string | null }>(
      `select greatest(max(${C}) ${cap}, cast($2 as ${facts.type}))::text as upper
         from ${qualifiedName(schema, table)} where $1::text is null or ${C} > cast($1 as ${facts.type})`,
      capInFlight ? [lower, previous?.value ?? null, xmax, xmin] : [lower, previous?.value ?? null],
    )
    return { snapshot: text, xmax, lower, upper: bounds.rows[0]?.upper ?? null }
  }

  /**
   * The rows of the run: cursor in (lower, upper], or a NULL cursor, visible now; less the rows the previous run
   * delivered (in its range and visible in its snapshot). docs/incremental.md states the invariant.
   */
  function rowsQuery(shape: Shape, facts: CursorFacts, plan: { snapshot: string; xmax: string; lower: string | null; upper: string | null }, previous: CheckpointProposal['previous']) {
    const C = sql.id(cursorColumn)
    const type = sql.raw(facts.type)
    // Visibility in the previous snapshot. The snapshot is a bound parameter; the xid reference (this run's xmax)
    // is bound too, as the last parameter (the fragment is shared text, so it is numbered after compiling).
    const inPrevious = previous
      ? sql<SqlBool>`${sql.raw(rowVisibleInSql('__SNAPSHOT__', 'cast(__XMAX__ as numeric)'))}`
      : undefined
    const inRange =
      plan.upper === null
        ? sql<SqlBool>`false`
        : plan.lower === null
          ? sql<SqlBool>`${C} <= cast(${plan.upper} as ${type})`
          : sql<SqlBool>`${C} > cast(${plan.lower} as ${type}) and ${C} <= cast(${plan.upper} as ${type})`
    const nullRows = inPrevious ? sql<SqlBool>`${C} is null and not ${inPrevious}` : sql<SqlBool>`${C} is null`
    const delivered =
      previous && previous.value !== null && inPrevious
        ? previous.lower === null
          ? sql<SqlBool>`${C} <= cast(${previous.value} as ${type}) and ${inPrevious}`
          : sql<SqlBool>`${C} > cast(${previous.lower} as ${type}) and ${C} <= cast(${previous.value} as ${type}) and ${inPrevious}`
        : sql<SqlBool>`false`
    const query = builder
      .selectFrom(sql`${sql.id(schema, table)}`.as(table))
      .select(shape.columns.map((column) => sql.id(column.name).as(column.name)))
      .where(sql<SqlBool>`((${inRange}) or (${nullRows})) and not coalesce(${delivered}, false)`)
    const compiled = withFilter(query, where).compile()
    if (!previous) return compiled
    const xmaxAt = compiled.parameters.length + 1
    return {
      sql: compiled.sql
        .replaceAll('cast(__XMAX__ as numeric)', `cast($${xmaxAt} as numeric)`)
        .replaceAll('__SNAPSHOT__', `cast($${xmaxAt + 1} as pg_snapshot)`),
      parameters: [...compiled.parameters, plan.xmax, previous.snapshot],
    }
  }

  return Object.freeze({
    name: `incremental ${schema}.${table} by ${cursorColumn}`,
    incremental: { key: { source: connection.label, schema, table }, cursorColumn, checkpoints: parsed.checkpoints },
    shape: async () => {
      const { facts: _facts, ...shape } = await describe({})
      return shape
    },
    batches,
    [Symbol.asyncIterator]: () => batches(),
  })
}

async function cursorFacts(client: pg.ClientBase, schema: string, table: string, column: string): Promise<CursorFacts> {
  const { rows } = await client.query<{ type: string; orderable: boolean; is_time: boolean }>(
    `select format_type(a.atttypid, a.atttypmod) as type,
            exists (select 1 from pg_opclass c join pg_am am on am.oid = c.opcmethod
                     where am.amname = 'btree' and c.opcdefault
                       and c.opcintype = any(array[t.oid, nullif(t.typbasetype, 0),
                             case coalesce(bt.typcategory, t.typcategory) when 'A' then 'anyarray'::regtype::oid
                                  when 'E' then 'anyenum'::regtype::oid when 'R' then 'anyrange'::regtype::oid end])) as orderable,
            coalesce(bt.typcategory, t.typcategory) = 'D' as is_time
       from pg_attribute a join pg_class r on r.oid = a.attrelid join pg_namespace n on n.oid = r.relnamespace
       join pg_type t on t.oid = a.atttypid left join pg_type bt on bt.oid = nullif(t.typbasetype, 0)
      where n.nspname = $1 and r.relname = $2 and a.attname = $3 and a.attnum > 0 and not a.attisdropped`,
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
}
