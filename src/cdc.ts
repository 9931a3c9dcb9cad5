// pg-datakit/cdc: the parts captureChanges (exported by the root, 'pg-datakit') is built from, for your own change
// pipeline: pgoutput decoding, transaction assembly, LSNs, slots and publications, cdcSource for your own sink. See
// docs/building-blocks.md and docs/cdc.md.
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
export { TransactionAssembler, type AssemblerOptions, type CommittedTransaction, type RawChange } from './cdc/transactions.js'
export { cdcSource, CdcSource, type CdcSourceOptions, type ChangeBatch } from './cdc/cdc-source.js'
export { changeRecords, type ChangeRecord } from './cdc/change-records.js'
export { takeInitialSnapshot, type InitialSnapshotOptions, type InitialSnapshotReport } from './cdc/initial-snapshot.js'
export { CHANGE_LOG_COLUMNS } from './cdc/change-log.js'

// The errors these throw: the same classes as the root export's (one shared chunk), so `instanceof` holds across both.
export {
  ConfigError,
  ConnectionLostError,
  DatakitError,
  MissingPublicationError,
  PublicationChangedError,
  ReplicaIdentityError,
  SerializationFailureError,
  SlotAheadError,
  SlotInvalidatedError,
  SlotMissingError,
  UnrepresentableValueError,
  WalLevelError,
} from './errors.js'
