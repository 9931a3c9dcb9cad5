// Connections
export { connect, Connection, type ConnectionSettings } from './connection/connection.js'
export { connectSource, connectWarehouse } from './connection/env.js'
export { SSL_MODES, type ConnectionOptions, type SslMode } from './connection/options.js'
export { redact } from './connection/redact.js'

// Pipeline
export { extract, type ExtractOptions, type Progress, type RunReport, type StepTiming } from './extract.js'
export type { RetryOptions } from './pipeline/retry.js'
export { silentLogger, type Logger } from './logger.js'
export type { Batch, BinaryCopy, CopyBytes, CopyFormat, ExtractionType, OpenContext, OpenedSource, Origin, Row, RunConstants, RunContext, Shape, Sink, SinkResult, SinkTarget, Source, Transform } from './contracts.js'

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
export { parsePartitionBound, type BoundValue, type PartitionBound } from './pg/partition-bound.js'

// Change data capture: pgoutput decoding, slots and publications, capture into a change log
export {
  lsnFromBigInt,
  lsnFromText,
  lsnText,
  PgOutputDecoder,
  timestampText,
  UNCHANGED,
  type Lsn,
  type PgOutputMessage,
  type RelationColumn,
  type TupleValue,
} from './cdc/pgoutput.js'
export { tupleReader } from './cdc/tuple.js'
export { checkCdcReady, dropSlot, ensurePublication, ensureSlot, slotStatus, type SlotStatus } from './cdc/slots.js'
export { TransactionAssembler, type CommittedTransaction, type RawChange } from './cdc/transactions.js'
export { cdcSource, CdcSource, type CdcSourceOptions, type ChangeBatch } from './cdc/cdc-source.js'
export { changeRecords, type ChangeRecord } from './cdc/change-records.js'
export { captureChanges, type CaptureOptions, type CaptureReport } from './cdc/capture.js'
export type { CaptureHealth } from './cdc/capture-health.js'
export type { AssemblerOptions } from './cdc/transactions.js'
export { takeInitialSnapshot, type InitialSnapshotOptions, type InitialSnapshotReport } from './cdc/initial-snapshot.js'
export { CHANGE_LOG_COLUMNS } from './cdc/change-log.js'

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

// PostgreSQL building blocks for custom sources and sinks
export type { Column } from './pg/types.js'
export { quoteIdent, qualifiedName } from './pg/identifiers.js'
export { typeParsersFor, losslessTypes } from './pg/type-parsers.js'
export { encodeRows, rowEncoder, valueToText } from './pg/copy-text-encoder.js'
export { toJsonText } from './pg/json-text.js'
export { CopyTextDecoder } from './pg/copy-text-decoder.js'
export { appendToLines } from './pg/copy-line-suffix.js'

// Errors
export {
  AbortedError,
  CheckpointConflictError,
  CheckpointWriteError,
  ConfigError,
  ConnectionError,
  ConnectionLostError,
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
