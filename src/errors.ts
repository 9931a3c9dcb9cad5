/**
 * Every failure a caller can act on has its own class and a stable `code`.
 * Errors carry the step that failed (`source`, `transform`, `sink`, `connect`, `config`),
 * the context (schema, table, ...) and the original error as `cause`, never a password.
 */

export type Step = 'config' | 'connect' | 'source' | 'transform' | 'sink' | 'pipeline'

export interface ErrorContext {
  readonly [key: string]: string | number | boolean | undefined
}

export interface DatakitErrorOptions {
  readonly step?: Step
  readonly context?: ErrorContext
  readonly cause?: unknown
}

/** Base class of every error pg-datakit throws on purpose. */
export class DatakitError extends Error {
  readonly code: string = 'DATAKIT_ERROR'
  readonly step: Step | undefined
  readonly context: ErrorContext
  /** SQLSTATE of the PostgreSQL error behind this one, when there is one. */
  readonly sqlState: string | undefined

  /** Whether the failure says nothing was committed and running again may succeed (see `extract({ retry })`). */
  get retryable(): boolean {
    return false
  }

  constructor(message: string, options: DatakitErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.step = options.step
    this.context = Object.freeze({ ...options.context })
    this.sqlState = sqlStateOf(options.cause)
  }
}

/** An option, URL or environment variable is missing or invalid. `path` names the field. */
export class ConfigError extends DatakitError {
  override readonly code = 'CONFIG_INVALID'
  readonly path: string

  constructor(path: string, message: string, options: DatakitErrorOptions = {}) {
    super(`${path ? `${path}: ` : ''}${message}`, { step: 'config', ...options })
    this.path = path
  }
}

/** The server could not be reached or refused the connection (network, auth, TLS). */
export class ConnectionError extends DatakitError {
  override readonly code = 'CONNECTION_FAILED'
  /**
   * Network failures (refused, reset, timed out) and a server still starting (57P03) may pass; a server that
   * answered with an error (bad password, no such database, TLS refused) will answer the same again.
   */
  override get retryable(): boolean {
    return this.sqlState === undefined ? !/certificate|self.signed|SSL|TLS|hostname/i.test(this.message) : this.sqlState === '57P03'
  }
}

/** No pooled connection became free within `pool.acquireTimeoutMs`. */
export class PoolTimeoutError extends DatakitError {
  override readonly code = 'POOL_ACQUIRE_TIMEOUT'
  override get retryable(): boolean {
    return true
  }
}

/** An established connection was lost mid-run (server shutdown, terminated backend, socket error). */
export class ConnectionLostError extends DatakitError {
  override readonly code = 'CONNECTION_LOST'
  /** Retryable unless the connection was lost during the commit: then whether it committed is unknown. */
  override get retryable(): boolean {
    return this.context.phase !== 'commit'
  }
}

/** The transaction hit a serialization failure (40001) or a deadlock (40P01); running again may succeed. */
export class SerializationFailureError extends DatakitError {
  override readonly code = 'SERIALIZATION_FAILURE'
  override get retryable(): boolean {
    return true
  }
}

/** The statement ran longer than `timeouts.statementMs` (SQLSTATE 57014). */
export class StatementTimeoutError extends DatakitError {
  override readonly code = 'STATEMENT_TIMEOUT'
}

/** A lock was not granted within `timeouts.lockMs` (SQLSTATE 55P03). */
export class LockTimeoutError extends DatakitError {
  override readonly code = 'LOCK_TIMEOUT'
}

/** The role lacks a privilege it needs (SQLSTATE 42501). */
export class PermissionDeniedError extends DatakitError {
  override readonly code = 'PERMISSION_DENIED'
}

/** The schema or table does not exist (or is not visible to the role). */
export class UnknownTableError extends DatakitError {
  override readonly code = 'UNKNOWN_TABLE'
}

/** A requested column does not exist in the table. */
export class UnknownColumnError extends DatakitError {
  override readonly code = 'UNKNOWN_COLUMN'
}

/** A column's type cannot be carried by the chosen path. */
export class UnsupportedTypeError extends DatakitError {
  override readonly code = 'UNSUPPORTED_TYPE'
}

/** The source query failed for a reason not covered by a more specific class. */
export class SourceQueryError extends DatakitError {
  override readonly code = 'SOURCE_QUERY_FAILED'
}

/** Writing to the sink failed for a reason not covered by a more specific class. */
export class SinkWriteError extends DatakitError {
  override readonly code = 'SINK_WRITE_FAILED'
}

/**
 * A value the warehouse's type cannot hold without changing it (NaN in a DuckDB DECIMAL, a multi-dimensional array in
 * a DuckDB list, a timestamp past DuckDB's range). Nothing was written; `context.column` names the column.
 */
export class UnrepresentableValueError extends DatakitError {
  override readonly code = 'VALUE_NOT_REPRESENTABLE'
}

/** A file sink cannot create or write its files: the directory is read-only, missing rights, or under a regular file. */
export class PathNotWritableError extends DatakitError {
  override readonly code = 'PATH_NOT_WRITABLE'
}

/** One column whose type in the source no longer fits its bronze column (see `SchemaDriftError`). */
export interface ColumnDrift {
  readonly column: string
  /** The bronze column's type, as `format_type` prints it. */
  readonly bronzeType: string
  /** The stream's type for the column. */
  readonly sourceType: string
}

/**
 * The source's column types changed in a way the existing bronze table cannot take without losing values (a change
 * of kind, such as text to integer or numeric to double precision), or PostgreSQL refused to widen a bronze column
 * (a view depends on it). Nothing was written. `columns` names each column, its bronze type and the source's.
 */
export class SchemaDriftError extends DatakitError {
  override readonly code = 'SCHEMA_DRIFT'
  readonly columns: readonly ColumnDrift[]

  constructor(message: string, columns: readonly ColumnDrift[], options: DatakitErrorOptions = {}) {
    super(message, { step: 'sink', ...options })
    this.columns = Object.freeze(columns.map((drift) => Object.freeze({ ...drift })))
  }
}

/** A transform threw. */
export class TransformError extends DatakitError {
  override readonly code = 'TRANSFORM_FAILED'
}

/** Another run moved the checkpoint since this run read it (two runs of one extraction at once). */
export class CheckpointConflictError extends DatakitError {
  override readonly code = 'CHECKPOINT_CONFLICT'
}

/**
 * The sink committed the rows but the checkpoint could not be written to a store outside its transaction. Never
 * retried by running the pipeline again (that would deliver the rows twice); the next run reads the same range
 * again (merge: no change; append: those rows twice). `context.target` says where the rows are.
 */
export class CheckpointWriteError extends DatakitError {
  override readonly code = 'CHECKPOINT_WRITE_FAILED'
}

/** `partitionedSource` was given a table that is not partitioned. */
export class NotPartitionedError extends DatakitError {
  override readonly code = 'NOT_PARTITIONED'
}

/** Partitions were attached or detached between planning and reading: the plan no longer describes the table. */
export class PartitionsChangedError extends DatakitError {
  override readonly code = 'PARTITIONS_CHANGED'
}

/** Logical decoding needs `wal_level = logical` on the source server. */
export class WalLevelError extends DatakitError {
  override readonly code = 'WAL_LEVEL_NOT_LOGICAL'
}

/** The named publication does not exist in the source database. */
export class MissingPublicationError extends DatakitError {
  override readonly code = 'PUBLICATION_NOT_FOUND'
}

/** Published tables whose updates and deletes would carry no key (REPLICA IDENTITY NOTHING, or DEFAULT without a primary key). */
export class ReplicaIdentityError extends DatakitError {
  override readonly code = 'REPLICA_IDENTITY_MISSING'
}

/** The replication slot was invalidated (`wal_status = 'lost'`): the WAL it needed is gone; changes were lost. */
export class SlotInvalidatedError extends DatakitError {
  override readonly code = 'SLOT_INVALIDATED'
}

/**
 * The warehouse holds a captured position for a replication slot that no longer exists on the source (dropped by an
 * operator, or lost in a failover: PostgreSQL 15 does not carry logical slots to a standby). A new slot would start at
 * the current WAL and every change in between would be lost, so the capture stops. Re-snapshot (`slotLost:
 * 'resnapshot'`) or restore the slot; docs/cdc.md has the runbook.
 */
export class SlotMissingError extends DatakitError {
  override readonly code = 'SLOT_MISSING'
}

/**
 * The slot has confirmed a position the warehouse does not hold (the warehouse lost its last commits, was restored
 * from a backup, or the slot was re-created): the changes in between will never be sent again. docs/cdc.md has the runbook.
 */
export class SlotAheadError extends DatakitError {
  override readonly code = 'SLOT_AHEAD_OF_WAREHOUSE'
}

/**
 * A table was added to the publication while the capture ran, and the capture was told not to snapshot new tables
 * (`newTables: 'error'`): its rows from before it was published would be missing in bronze.
 */
export class PublicationChangedError extends DatakitError {
  override readonly code = 'PUBLICATION_CHANGED'
}

/** The job queue's server (Redis, for `pg-datakit/bullmq`) cannot be reached: nothing was written. */
export class QueueUnavailableError extends DatakitError {
  override readonly code = 'QUEUE_UNAVAILABLE'
}

/**
 * A scale-out run ended without committing: a piece failed for good, or the run was already committed. Its staging
 * area was removed and nothing became visible; the run can be started again (docs/scale-out.md).
 */
export class ScaleOutFailedError extends DatakitError {
  override readonly code = 'SCALE_OUT_FAILED'
}

/**
 * The coordinator of a scale-out run is gone (its process died or its warehouse session ended), so the run's
 * snapshot is gone too: the run was abandoned, its staging area removed, nothing became visible.
 */
export class CoordinatorGoneError extends DatakitError {
  override readonly code = 'SCALE_OUT_COORDINATOR_GONE'
}

/** The run was cancelled through its `AbortSignal`. Nothing was committed. */
export class AbortedError extends DatakitError {
  override readonly code = 'ABORTED'
}

/** The SQLSTATE of a pg error (or of the error it wraps). */
export function sqlStateOf(error: unknown): string | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code
    current = current.cause
  }
  return undefined
}

const CONNECTION_LOST_STATES = new Set(['57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004'])
const SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND'])

/**
 * Turns whatever a driver threw into the most specific pg-datakit error.
 * `fallback` builds the error used when nothing more specific applies.
 */
export function classifyError(
  error: unknown,
  step: Step,
  context: ErrorContext,
  fallback: new (message: string, options: DatakitErrorOptions) => DatakitError,
): DatakitError {
  if (error instanceof DatakitError) return error
  const options = { step, context, cause: error }
  const message = error instanceof Error ? error.message : String(error)
  const where = describeContext(context)
  const state = sqlStateOf(error)
  switch (state) {
    case '57014':
      return new StatementTimeoutError(`statement timeout${where}: ${message}`, options)
    case '55P03':
      return new LockTimeoutError(`lock not granted in time${where}: ${message}`, options)
    case '42501':
      return new PermissionDeniedError(`permission denied${where}: ${message}`, options)
    case '42P01':
    case '3F000':
      return new UnknownTableError(`${message}${where}`, options)
    case '42703':
      return new UnknownColumnError(`${message}${where}`, options)
    case '40001':
    case '40P01':
      return new SerializationFailureError(`${message}${where}`, options)
  }
  if (state && CONNECTION_LOST_STATES.has(state)) {
    return new ConnectionLostError(`connection lost${where}: ${message}`, options)
  }
  const errno = (error as { code?: unknown } | null)?.code
  if (
    (typeof errno === 'string' && SOCKET_CODES.has(errno)) ||
    /Connection terminated|connection is closed|Client has encountered a connection error/i.test(message)
  ) {
    return new ConnectionLostError(`connection lost${where}: ${message}`, options)
  }
  return new fallback(`${message}${where}`, options)
}

function describeContext(context: ErrorContext): string {
  const parts = Object.entries(context)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${String(value)}`)
  return parts.length ? ` (${parts.join(', ')})` : ''
}
