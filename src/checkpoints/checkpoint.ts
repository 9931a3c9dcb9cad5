/**
 * Which extraction a checkpoint belongs to. Two pipelines from one table (another target, another filter, other
 * columns) have different keys, so neither can skip the other's rows.
 */
export interface CheckpointKey {
  /** The source database's identity: its cluster's system identifier and the database name (not the URL's text). */
  readonly source: string
  readonly schema: string
  readonly table: string
  /** The pipeline: the source's explicit `name`, or a digest of its columns, filter and the sink's target. */
  readonly pipeline: string
}

/** What an incremental source says about itself; `extract()` adds the sink's target to make the key. */
export interface CheckpointScope {
  readonly source: string
  readonly schema: string
  readonly table: string
  /** The columns the pipeline chose (sorted), or `['*']` for all the table has at each run. */
  readonly columns: readonly string[]
  /** The row filter as compiled SQL and parameters ('' when none). */
  readonly filter: string
  /** An explicit pipeline name: the key then ignores columns, filter and target. */
  readonly name: string | undefined
}

/**
 * Where an incremental extraction got to. Cursor values are kept as PostgreSQL's text of the value (exact for every
 * type: microseconds, numeric digits), read and compared by the server in the column's own type.
 *
 * The invariant it states (docs/incremental.md): every row version of its `relations` written by a transaction older
 * than `horizon` whose cursor is at most `value` (or NULL) has been delivered.
 */
export interface Checkpoint {
  readonly cursorColumn: string
  /** The largest cursor value covered (inclusive); null when no row below the horizon had a cursor value yet. */
  readonly value: string | null
  /** Where the run's range started (its search for new values; informative). */
  readonly lower: string | null
  /**
   * The 64-bit id of the oldest transaction of the source database still in flight at the run's snapshot (or the
   * snapshot's xmax when none was): rows of this transaction and younger ones are left to later runs.
   */
  readonly horizon: string
  /**
   * The OIDs of the relations the run read (the table and its partitions or inheritance children). A relation the
   * next run finds that is not here (a partition attached since) is covered by nothing: all its rows are read.
   * Absent in checkpoints made before it was kept (then every relation counts as known).
   */
  readonly relations?: readonly number[]
  /** The source snapshot the run read in (`pg_current_snapshot()` text). */
  readonly snapshot: string
  readonly runId: string
  readonly rows: number
  readonly status: 'committed'
  readonly startedAt: string
  readonly updatedAt: string
}

/**
 * Keeps checkpoints. `postgresCheckpoints` (the PostgreSQL sink's default) writes them in the sink's transaction;
 * other stores are written right after the sink commits (see docs/incremental.md for what that means).
 */
export interface CheckpointStore {
  readonly name: string
  read(key: CheckpointKey): Promise<Checkpoint | undefined>
  /**
   * Writes `next` if the stored checkpoint is still `expectedRunId`'s (null: none stored); otherwise throws
   * `CheckpointConflictError`, because another run moved it in between.
   */
  write(key: CheckpointKey, next: Checkpoint, expectedRunId: string | null): Promise<void>
}

/** A run's move of one checkpoint: committed by the sink in its transaction, or by `extract()` right after it. */
export interface PendingCheckpoint {
  readonly key: CheckpointKey
  readonly store: CheckpointStore
  readonly previous: Checkpoint | undefined
  /** `rows` is filled in by whoever writes it. */
  readonly next: Checkpoint
}
