import { createHash } from 'node:crypto'
import type { Origin } from '../contracts.js'
import { ConfigError } from '../errors.js'
import type { Column } from '../pg/types.js'
import type { ExtractionPlan, Piece } from '../sources/plan.js'

/** How the commit makes a run's rows visible: as `postgresSink`'s modes (docs/sinks.md). */
export type ScaleOutMode = 'replace' | 'append' | 'merge'

/** One table of a run: where it comes from, what it looks like, where it lands. */
export interface ScaleOutTable {
  readonly index: number
  /** The source table's plan (`parallelSource` / `partitionedSource`): its pieces carry their ids within it. */
  readonly plan: ExtractionPlan
  /** The columns the pieces write: the source's, and for a partitioned table `_bronze_partition` and `_bronze_parent_table`. */
  readonly columns: readonly Column[]
  readonly origin: Origin
  /** The source's primary key (merge upserts by it unless the sink names one). */
  readonly primaryKey: readonly string[] | null
  /** The target table in the sink schema; its staging table has the same name in the run's staging schema. */
  readonly target: string
}

/** One unit of work of a run: a piece of one table's plan, with an id unique in the run. */
export interface ScaleOutPiece {
  readonly id: number
  readonly table: number
  readonly piece: Piece
}

/**
 * A scale-out run, planned by the coordinator: plain JSON, handed to every worker (through a job queue, or any other
 * way). It names the exported snapshot every piece reads in and the staging schema every piece writes into; it holds
 * no password (connections are the workers' own).
 */
export interface ScaleOutPlan {
  readonly version: 1
  readonly runId: string
  /** When the coordinator started the run: `_bronze_loaded_at` of every row. */
  readonly startedAt: string
  /** The source database, without password. */
  readonly source: string
  /** `pg_export_snapshot()` of the coordinator's transaction, valid while the coordinator holds it. */
  readonly snapshot: string
  /**
   * The run's staging schema in the warehouse (`pgdk_run_<hash of runId and startedAt>`), dropped once the run ends:
   * a run id started again gets a staging schema of its own, which the old run's late jobs never find.
   */
  readonly staging: string
  readonly sink: {
    readonly schema: string
    readonly mode: ScaleOutMode
    readonly primaryKey: readonly string[] | null
    /** Bronze metadata columns added at commit (at no cost per row, as `postgresSink` adds run constants). */
    readonly metadata: boolean
  }
  readonly tables: readonly ScaleOutTable[]
  readonly pieces: readonly ScaleOutPiece[]
}

/**
 * The staging schema of a run: a name of its own per run id and start, short enough for any run id. A run id started
 * again after its coordinator died gets another schema than the dead run's.
 */
export function stagingSchemaFor(runId: string, startedAt: string): string {
  return `pgdk_run_${createHash('sha256').update(`${runId}\u0000${startedAt}`).digest('hex').slice(0, 16)}`
}

/**
 * The key of the advisory lock a coordinator holds (session-level, in the warehouse) for its run id: two coordinators
 * never run one run id at once, and one that takes it knows any earlier coordinator of that run id is gone.
 */
export function runLockKey(runId: string): string {
  return `pg-datakit scale-out run ${runId}`
}

/**
 * The key of the advisory lock the coordinator holds (session-level, in the warehouse) for as long as it holds the
 * snapshot. Whoever can take it knows the coordinator is gone: its process died, or its session ended.
 */
export function coordinatorLockKey(staging: string): string {
  return `pg-datakit scale-out ${staging}`
}

/**
 * The part of a plan one piece needs: its table and itself. A job queue carries this per piece rather than the whole
 * plan (a run of many tables would otherwise store the plan once per piece).
 */
export function planForPiece(plan: ScaleOutPlan, pieceId: number): ScaleOutPlan {
  const piece = pieceOf(plan, pieceId)
  const table = tableOf(plan, piece.table)
  return { ...plan, tables: [table], pieces: [piece] }
}

export function pieceOf(plan: ScaleOutPlan, pieceId: number): ScaleOutPiece {
  const piece = plan.pieces.find((candidate) => candidate.id === pieceId)
  if (!piece) throw new ConfigError('pieceId', `run ${plan.runId} has no piece ${pieceId} (pieces 0-${plan.pieces.length - 1})`)
  return piece
}

export function tableOf(plan: ScaleOutPlan, index: number): ScaleOutTable {
  const table = plan.tables.find((candidate) => candidate.index === index)
  if (!table) throw new ConfigError('plan', `run ${plan.runId} has no table ${index}: the plan is not one the coordinator made`)
  return table
}
