/** Which extraction a checkpoint belongs to. */
export interface CheckpointKey {
  /** The source database as a URL without password. */
  readonly source: string
  readonly schema: string
  readonly table: string
}

/**
 * Where an incremental extraction got to. Cursor values are kept as PostgreSQL's text of the value (exact for every
 * type: microseconds, numeric digits), read and compared by the server in the column's own type.
 */
export interface Checkpoint {
  readonly cursorColumn: string
  /** The upper bound the run covered (inclusive); null when the table had no row with a cursor value yet. */
  readonly value: string | null
  /** The lower bound the run covered (exclusive); null for a first run. */
  readonly lower: string | null
  /** The source snapshot the run read in (`pg_current_snapshot()` text), to skip rows it already saw. */
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

/** What an incremental source proposes for its run; the sink (or extract) commits it. */
export interface CheckpointProposal {
  readonly key: CheckpointKey
  readonly store: CheckpointStore
  readonly previous: Checkpoint | undefined
  next: Checkpoint | undefined
  /** Set by a sink that wrote `next` in its own transaction. */
  committed: boolean
}
