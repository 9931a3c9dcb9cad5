// Connections
export { connect, Connection, type ConnectionSettings } from './connection/connection.js'
export { connectSource, connectWarehouse } from './connection/env.js'
export { SSL_MODES, type ConnectionOptions, type SslMode } from './connection/options.js'
export { redact } from './connection/redact.js'

// Pipeline
export { extract, type ExtractOptions, type Progress, type RunReport, type StepTiming } from './extract.js'
export type { RetryOptions } from './pipeline/retry.js'
export { silentLogger, type Logger } from './logger.js'
export type {
  Batch,
  BinaryCopy,
  CopyBytes,
  CopyFormat,
  ExtractionType,
  OpenContext,
  OpenedSource,
  Origin,
  Row,
  RunConstants,
  RunContext,
  Shape,
  Sink,
  SinkResult,
  SinkTarget,
  Source,
  Transform,
} from './contracts.js'

// Sources
export { tableSource, type TableFilter, type TableSourceOptions } from './sources/table.js'
export { querySource, type QuerySourceOptions } from './sources/query.js'
export { copySource, type CopySourceOptions } from './sources/copy.js'
export { incrementalSource, type IncrementalSource, type IncrementalSourceOptions } from './sources/incremental.js'
export {
  parallelSource,
  partitionedSource,
  PARTITION_COLUMNS,
  type ExtractionPlan,
  type KeyRange,
  type ParallelSourceOptions,
  type PartitionedSourceOptions,
  type Piece,
  type PlannedSource,
} from './sources/parallel.js'
// Scale-out: one extraction across worker processes, exactly once; the BullMQ integration is 'pg-datakit/bullmq'.
export {
  abandonRun,
  commitRun,
  planForPiece,
  runPiece,
  startRun,
  sweepStaging,
  type CommitResult,
  type PieceProgress,
  type PieceResult,
  type RunOptions,
  type RunPieceOptions,
  type ScaleOutPlan,
  type StartedRun,
} from './scale-out/index.js'
// Change data capture into the warehouse's change log. The parts it is built from (pgoutput decoding, slots and
// publications, cdcSource for your own sink) are in 'pg-datakit/cdc'.
export { captureChanges, type CaptureOptions, type CaptureReport } from './cdc/capture.js'
export type { CaptureHealth } from './cdc/capture-health.js'
export type { Lsn } from './cdc/pgoutput.js'

// Checkpoints
export type { Checkpoint, CheckpointKey, CheckpointScope, CheckpointStore, PendingCheckpoint } from './checkpoints/checkpoint.js'
export { postgresCheckpoints, type PostgresCheckpointStore } from './checkpoints/postgres.js'
export { memoryCheckpoints } from './checkpoints/memory.js'
export { fileCheckpoints } from './checkpoints/file.js'

// Transforms
export { bronzeMetadata, BRONZE_COLUMNS } from './transforms/bronze-metadata.js'
export { parseJsonb, type ParseFailure, type ParseJsonbOptions } from './transforms/parse-jsonb.js'
export { JsonNumber } from './util/lossless-json.js'
export { expandArrays, type ExpandArraysOptions } from './transforms/expand-arrays.js'

// Sinks
export { postgresSink, type PostgresSinkOptions } from './sinks/postgres.js'
export { memorySink, type MemorySink } from './sinks/memory.js'

// The PostgreSQL building blocks for custom sources and sinks (COPY text codec, type parsers, identifiers) are in
// 'pg-datakit/pg'.

// Errors
export {
  AbortedError,
  CheckpointConflictError,
  CheckpointWriteError,
  ConfigError,
  ConnectionError,
  ConnectionLostError,
  CoordinatorGoneError,
  DatakitError,
  LockTimeoutError,
  MissingPublicationError,
  ReplicaIdentityError,
  PublicationChangedError,
  SlotAheadError,
  SlotInvalidatedError,
  SlotMissingError,
  WalLevelError,
  NotPartitionedError,
  PartitionsChangedError,
  PathNotWritableError,
  PermissionDeniedError,
  PoolTimeoutError,
  QueueUnavailableError,
  ScaleOutFailedError,
  SchemaDriftError,
  SerializationFailureError,
  SinkWriteError,
  SourceQueryError,
  StatementTimeoutError,
  TransformError,
  UnknownColumnError,
  UnknownTableError,
  UnrepresentableValueError,
  UnsupportedTypeError,
  type ColumnDrift,
  type Step,
} from './errors.js'
