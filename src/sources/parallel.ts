import { sql, type SqlBool } from 'kysely'
import { z } from 'zod'
import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import type { Batch, OpenContext, OpenedSource, RunContext, Shape, Source } from '../contracts.js'
import { openedRead } from '../pipeline/open-source.js'
import { AbortedError, classifyError, ConfigError, NotPartitionedError, PartitionsChangedError, SourceQueryError } from '../errors.js'
import { takeLease } from '../pg/lease.js'
import { copyOutOn } from '../pg/copy-out.js'
import { decodeCopyBatches } from '../pg/copy-batches.js'
import { estimateRelations } from '../pg/estimate.js'
import { checkIdentifier, qualifiedName } from '../pg/identifiers.js'
import { inlineParameters, literal } from '../pg/inline-parameters.js'
import { discoverPartitions } from '../pg/partitions.js'
import { builder } from '../pg/sql-builder.js'
import { OID, type Column } from '../pg/types.js'
import { mergeConcurrently } from '../util/merge.js'
import { describeTableShape } from './describe.js'
import { planPages, planPartitions, type ExtractionPlan, type Piece } from './plan.js'

export type { ExtractionPlan, KeyRange, Piece } from './plan.js'

/** The columns a partitioned source adds, per piece. */
export const PARTITION_COLUMNS: readonly Column[] = Object.freeze([
  { name: '_bronze_partition', type: 'text', typeOid: OID.text },
  { name: '_bronze_parent_table', type: 'text', typeOid: OID.text },
])

const common = {
  schema: z.string().default('public'),
  table: z.string(),
  columns: z.array(z.string()).nonempty().optional(),
  /** Connections reading at once, all in one snapshot. */
  concurrency: z.number().int().min(1).max(64).default(2),
  batchSize: z.number().int().positive().max(1_000_000).default(1_000),
  /** A plan made earlier (`source.plan()`, possibly serialized): read exactly its pieces. */
  plan: z.custom<ExtractionPlan>((value) => (value as ExtractionPlan | undefined)?.version === 1).optional(),
}

const parallelSchema = z.strictObject({
  ...common,
  /** Pieces a plain table is cut into (ctid page ranges); 4 per connection when absent. */
  pieces: z.number().int().min(1).max(10_000).optional(),
})

const partitionedSchema = z.strictObject({
  ...common,
  /** Keep rows whose partition key is >= from (the key's text form, e.g. '2024-01-01'). */
  from: z.union([z.string(), z.number(), z.bigint()]).transform(String).optional(),
  /** Keep rows whose partition key is < to. */
  to: z.union([z.string(), z.number(), z.bigint()]).transform(String).optional(),
})

export type ParallelSourceOptions = z.input<typeof parallelSchema>
export type PartitionedSourceOptions = z.input<typeof partitionedSchema>

/** A source that reads in pieces on several connections under one snapshot, and can show its plan. */
export interface PlannedSource extends Source {
  plan(): Promise<ExtractionPlan>
}

/**
 * Reads a table on several connections at once, all importing one exported snapshot (`pg_export_snapshot()` +
 * `SET TRANSACTION SNAPSHOT`), so the result is exactly one point in time even while writers run. A plain table is
 * cut into heap page (ctid) ranges. The pieces' COPY streams are merged into one stream for one sink, so the sink's
 * transaction (and `replace`'s atomic swap) is unchanged.
 *
 * @example
 * await extract({ from: parallelSource(source, { table: 'events', concurrency: 4 }), through: [bronzeMetadata()], to: postgresSink(warehouse) })
 */
export function parallelSource(connection: Connection, options: ParallelSourceOptions): PlannedSource {
  const parsed = parseOptions(parallelSchema, options)
  return plannedSource(connection, parsed, async (client) => ({
    kind: 'table',
    partitions: null,
    range: null,
    pieces: await planPages(client, parsed.schema, parsed.table, parsed.pieces ?? parsed.concurrency * 4),
  }))
}

/**
 * Reads a partitioned table, one piece per leaf partition (sub-partitions and the default partition included),
 * keeping only partitions that can hold keys in `[from, to)` (a partition only partly inside gets a row filter).
 * Each row gets `_bronze_partition` and `_bronze_parent_table`. Pieces are read in parallel under one snapshot.
 *
 * @example
 * partitionedSource(source, { table: 'measurements', from: '2024-01-01', to: '2024-04-01', concurrency: 2 })
 */
export function partitionedSource(connection: Connection, options: PartitionedSourceOptions): PlannedSource {
  const parsed = parseOptions(partitionedSchema, options)
  return plannedSource(connection, parsed, async (client) => {
    const tree = await discoverPartitions(client, parsed.schema, parsed.table)
    if (!tree) {
      throw new NotPartitionedError(`"${parsed.schema}"."${parsed.table}" is not a partitioned table; use copySource or parallelSource`, {
        step: 'source',
        context: { schema: parsed.schema, table: parsed.table },
      })
    }
    const { pieces, range } = await planPartitions(client, tree, { from: parsed.from, to: parsed.to })
    return { kind: 'partitioned', partitions: tree.leaves.map(({ schema, table, oid }) => ({ schema, table, oid })), range, pieces }
  })
}

type Planner = (client: pg.ClientBase) => Promise<Pick<ExtractionPlan, 'kind' | 'partitions' | 'range' | 'pieces'>>

function plannedSource(
  connection: Connection,
  options: { schema: string; table: string; columns?: string[] | undefined; concurrency: number; batchSize: number; plan?: ExtractionPlan | undefined },
  planner: Planner,
): PlannedSource {
  const { schema, table, columns, concurrency, batchSize } = options
  checkIdentifier(schema, 'schema')
  checkIdentifier(table, 'table')
  const context = { schema, table }

  const plan = async (ctx: Partial<RunContext> = {}): Promise<ExtractionPlan> => {
    if (options.plan) return options.plan
    try {
      return await connection.withClient(async (client) => {
        const made = await planner(client)
        return { version: 1, source: connection.label, schema, table, columns: columns ?? null, ...made }
      }, ctx.signal)
    } catch (error) {
      throw classifyError(error, 'source', context, SourceQueryError)
    }
  }

  const shapeOf = async (made: ExtractionPlan, ctx: Partial<RunContext>): Promise<Shape> => {
    const { kind: _kind, ...shape } = await describeTableShape(
      connection,
      { schema: made.schema, table: made.table, columns: made.columns ?? undefined },
      made.kind === 'partitioned' ? 'partition' : 'full',
      ctx,
    )
    return made.kind === 'partitioned' ? { ...shape, columns: [...shape.columns, ...PARTITION_COLUMNS] } : shape
  }

  /** Planned and described once: the pieces read exactly the shape the sink was told about. */
  async function open(ctx: OpenContext = {}): Promise<OpenedSource> {
    const made = await plan(ctx)
    const shape = await shapeOf(made, ctx)
    return openedRead({
      shape,
      copyText: () => readPlan(connection, made, shape, concurrency, ctx),
      ...estimateOfPlan(connection, made, ctx),
      batches: () => decodeCopyBatches(readPlan(connection, made, shape, concurrency, ctx), shape.columns, { batchSize, context }),
    })
  }

  async function* copyText(ctx: OpenContext = {}): AsyncGenerator<Buffer> {
    yield* (await open(ctx)).copyText!()
  }

  async function* batches(ctx: OpenContext = {}): AsyncGenerator<Batch> {
    yield* (await open(ctx)).batches()
  }

  return Object.freeze({
    name: `parallel ${schema}.${table} (${concurrency} connections)`,
    open,
    plan: () => plan({}),
    shape: async () => shapeOf(await plan({}), {}),
    batches,
    copyText,
    [Symbol.asyncIterator]: () => batches(),
  })
}

/**
 * The plan's pieces, estimated from their relations' statistics: page ranges cover their whole table, partitions are
 * read whole unless they carry a key filter, whose share of the partition is unknown (then no estimate).
 */
function estimateOfPlan(connection: Connection, plan: ExtractionPlan, ctx: Partial<RunContext>): Pick<OpenedSource, 'estimate'> {
  if (plan.pieces.some((piece) => piece.filter)) return {}
  const relations = new Map(plan.pieces.map((piece) => [JSON.stringify([piece.schema, piece.table]), { schema: piece.schema, table: piece.table }]))
  return { estimate: () => connection.withClient((client) => estimateRelations(client, [...relations.values()]), ctx.signal) }
}

/**
 * Reads every piece of a plan: one coordinator transaction exports a snapshot (after checking, in it, that the
 * partitions are still the plan's, and locking the parent against DETACH), then `concurrency` workers import it
 * and COPY their pieces. The COPY reader emits whole rows, so the pieces' streams can be merged chunk by chunk.
 */
async function* readPlan(connection: Connection, plan: ExtractionPlan, shape: Shape, concurrency: number, ctx: Partial<RunContext>): AsyncGenerator<Buffer> {
  const context = { schema: plan.schema, table: plan.table }
  const coordinator = await takeLease(connection, ctx.signal, context)
  try {
    coordinator.busy()
    await coordinator.client.query('begin isolation level repeatable read read only')
    if (plan.kind === 'partitioned') await checkPartitions(coordinator.client, plan)
    const snapshot = (await coordinator.client.query<{ id: string }>('select pg_export_snapshot() as id')).rows[0]?.id as string
    const sourceColumns = plan.kind === 'partitioned' ? shape.columns.slice(0, -PARTITION_COLUMNS.length) : shape.columns
    const queue = [...plan.pieces]
    yield* mergeConcurrently<Buffer>(Math.min(concurrency, Math.max(1, queue.length)), async (_worker, emit, stopped) => {
      const worker = await takeLease(connection, ctx.signal, context)
      try {
        worker.busy()
        await worker.client.query('begin isolation level repeatable read read only')
        await worker.client.query(`set transaction snapshot ${literal(snapshot)}`)
        for (let piece = queue.shift(); piece && !stopped(); piece = queue.shift()) {
          const statement = `copy (${pieceQuery(piece, sourceColumns, plan)}) to stdout`
          // Chunks are whole rows, so pieces can be interleaved as they come.
          for await (const chunk of copyOutOn(worker.client, statement, { ...context, piece: piece.id }, ctx.signal)) {
            await emit(chunk)
          }
        }
        await worker.client.query('commit')
        worker.idle()
      } catch (error) {
        throw worker.aborted ?? (ctx.signal?.aborted ? new AbortedError('extraction aborted', { step: 'source', context, cause: error }) : error)
      } finally {
        worker.release()
      }
    })
    await coordinator.client.query('commit')
    coordinator.idle()
  } catch (error) {
    throw coordinator.aborted ?? classifyError(error, 'source', context, SourceQueryError)
  } finally {
    // Left early (a break, or an error): the transaction is still open, so the lease destroys the client.
    coordinator.release()
  }
}

/** In the run's snapshot: the parent is locked against DETACH, and its leaves must be exactly the plan's. */
export async function checkPartitions(client: pg.ClientBase, plan: ExtractionPlan): Promise<void> {
  await client.query(`lock table ${qualifiedName(plan.schema, plan.table)} in access share mode`)
  const tree = await discoverPartitions(client, plan.schema, plan.table)
  const now = new Map((tree?.leaves ?? []).map((leaf) => [leaf.oid, `${leaf.schema}.${leaf.table}`]))
  const planned = new Map((plan.partitions ?? []).map((leaf) => [leaf.oid, `${leaf.schema}.${leaf.table}`]))
  const attached = [...now].filter(([oid]) => !planned.has(oid)).map(([, name]) => name)
  const detached = [...planned].filter(([oid]) => !now.has(oid)).map(([, name]) => name)
  if (attached.length || detached.length) {
    throw new PartitionsChangedError(
      `the partitions of ${plan.schema}.${plan.table} changed since the plan was made (${[
        attached.length ? `attached: ${attached.join(', ')}` : '',
        detached.length ? `detached: ${detached.join(', ')}` : '',
      ]
        .filter(Boolean)
        .join('; ')}); make a new plan`,
      { step: 'source', context: { schema: plan.schema, table: plan.table } },
    )
  }
}

/**
 * The SELECT of one piece, with its values inlined (COPY takes no parameters). A partition's metadata columns are
 * selected as constants: the server writes them, in parallel, rather than the one Node process per row.
 */
export function pieceQuery(piece: Piece, columns: readonly Column[], plan: ExtractionPlan): string {
  const partition =
    plan.kind === 'partitioned'
      ? [sql`${piece.partition ?? null}::text`.as('_bronze_partition'), sql`${`${plan.schema}.${plan.table}`}::text`.as('_bronze_parent_table')]
      : []
  let query = builder
    .selectFrom(sql`${sql.id(piece.schema, piece.table)}`.as('piece'))
    .select([...columns.map((column) => sql.id(column.name).as(column.name)), ...partition])
  if (piece.pages) {
    query = query.where(sql<SqlBool>`ctid >= cast(${`(${piece.pages.from},0)`} as tid)`)
    if (piece.pages.to !== null) query = query.where(sql<SqlBool>`ctid < cast(${`(${piece.pages.to},0)`} as tid)`)
  }
  if (piece.filter) {
    const key = sql.id(piece.filter.column)
    if (piece.filter.from !== undefined) query = query.where(sql<SqlBool>`${key} >= ${piece.filter.from}`)
    if (piece.filter.to !== undefined) query = query.where(sql<SqlBool>`${key} < ${piece.filter.to}`)
  }
  const compiled = query.compile()
  if (columns.length === 0) throw new ConfigError('columns', 'nothing to read: the table has no columns')
  return inlineParameters(compiled.sql, compiled.parameters)
}
