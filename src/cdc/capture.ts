import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { classifyError, SinkWriteError, SourceQueryError } from '../errors.js'
import { checkIdentifier } from '../pg/identifiers.js'
import { applyChanges } from './apply.js'
import type { BronzeRelation } from './bronze-table.js'
import { cdcSource, type CdcSource, type ChangeBatch } from './cdc-source.js'
import { ChangeLogLines } from './change-log-lines.js'
import type { PgOutputMessage } from './pgoutput.js'
import type { InitialSnapshotReport } from './initial-snapshot.js'
import { ensureChangeLog, writeChanges } from './change-log.js'
import { startCapture } from './capture-start.js'
import { primaryKeyOf } from '../pg/catalog.js'

export interface CaptureOptions {
  readonly slot: string
  readonly publication: string
  /** The warehouse: the change log is `<schema>.cdc_changes`, the slot's position `<schema>.cdc_state`. */
  readonly to: Connection
  readonly schema?: string
  /** A batch is written when it holds this many changes... (default 10,000) */
  readonly maxBatchChanges?: number
  /** ...or when its oldest change waited this long (default 1,000 ms). */
  readonly maxBatchMs?: number
  /** Large in-progress transactions arrive in parts (`streaming 'on'`); see `cdcSource`. Default true. */
  readonly streaming?: boolean
  readonly signal?: AbortSignal
  /**
   * Also apply the changes to `<schema>.br_<table>` (insert/update/delete/truncate by the replica identity) in the same
   * transaction as the change log. Default false.
   */
  readonly apply?: boolean
  /**
   * Start with the initial snapshot hand-off (`takeInitialSnapshot`): make the slot with an exported snapshot, copy the
   * published tables as of it into `<schema>.br_<table>`, then stream from its consistent point. Needs a slot that does
   * not exist yet (or one an unfinished snapshot left); once the warehouse holds a position for the slot, it is skipped.
   * Default false.
   */
  readonly initialSnapshot?: boolean
  /**
   * What to do when the warehouse holds a position for the slot but the slot is gone (dropped, or lost in a failover):
   * `'error'` (default) stops with `SlotMissingError`; `'resnapshot'` makes the slot anew and copies the published
   * tables again, as the initial snapshot does (the change log keeps a gap, recorded in `cdc_state`).
   */
  readonly slotLost?: 'error' | 'resnapshot'
  /** After the initial snapshot is in the warehouse. */
  readonly onSnapshot?: (snapshot: InitialSnapshotReport) => void
  /** After each batch is durable in the warehouse (and acknowledged to the server). */
  readonly onBatch?: (batch: { transactions: number; changes: number; lastCommitEndLsn: string }) => void
}

export interface CaptureReport {
  readonly transactions: number
  readonly changes: number
  readonly batches: number
  /** Transactions the warehouse already had (re-sent after a restart) and that were skipped. */
  readonly skippedTransactions: number
  readonly lastCommitEndLsn: string
}

/**
 * Streams committed changes from a logical replication slot (pgoutput) into the warehouse's change log until
 * `signal` aborts. Delivery is effectively exactly once:
 * - whole transactions are written together with the slot's position (`cdc_state`) in one warehouse transaction;
 * - only then is that position reported to the server as flushed, so the slot never moves past a change the
 *   warehouse does not hold;
 * - after a restart the server resends from the slot's confirmed position, and transactions the warehouse already
 *   holds (commit end LSN <= the stored position) are skipped.
 * One batch is written while the next is decoded; batches commit in order.
 */
export async function captureChanges(source: Connection, options: CaptureOptions): Promise<CaptureReport> {
  const schema = options.schema ?? 'bronze'
  checkIdentifier(schema, 'schema')
  const context = { slot: options.slot, publication: options.publication }
  const writer = await options.to.acquire(options.signal)
  let writerBroken: Error | undefined
  let changes: CdcSource | undefined
  // The batch being written; never left running when this returns (the writer goes back to the pool after it).
  let writing: Promise<void> = Promise.resolve()
  try {
    await ensureChangeLog(writer, schema)
    const start = await startCapture(source, writer, {
      slot: options.slot,
      publication: options.publication,
      schema,
      initialSnapshot: options.initialSnapshot ?? false,
      slotLost: options.slotLost ?? 'error',
      signal: options.signal,
    })
    if (start.snapshot) options.onSnapshot?.(start.snapshot)
    const startAfter = start.startAfter
    changes = cdcSource(source, {
      slot: options.slot,
      publication: options.publication,
      startAfter,
      createSlot: false,
      ...(options.maxBatchChanges !== undefined ? { maxBatchChanges: options.maxBatchChanges } : {}),
      ...(options.maxBatchMs !== undefined ? { maxBatchMs: options.maxBatchMs } : {}),
      ...(options.streaming !== undefined ? { streaming: options.streaming } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    })
    const lines = new ChangeLogLines()
    const apply = options.apply ? bronzeApplier(source, schema) : undefined
    const report = { transactions: 0, changes: 0, batches: 0, lastCommitEndLsn: startAfter }

    const write = async (batch: ChangeBatch, copyText: string): Promise<void> => {
      try {
        await writeChanges(writer, schema, options.slot, copyText, batch.lastCommitEndLsn, apply?.(batch))
      } catch (error) {
        writerBroken = error as Error
        throw classifyError(error, 'sink', { ...context, table: 'cdc_changes' }, SinkWriteError)
      }
      batch.acknowledge()
      report.transactions += batch.transactions.length
      report.changes += batch.changes
      report.batches++
      report.lastCommitEndLsn = batch.lastCommitEndLsn
      options.onBatch?.({ transactions: batch.transactions.length, changes: batch.changes, lastCommitEndLsn: batch.lastCommitEndLsn })
    }

    for await (const batch of changes) {
      // Encoded while the previous batch is still being written: Node works while the warehouse does.
      const copyText = lines.encode(batch.transactions)
      await writing
      writing = write(batch, copyText)
      // Awaited on the next turn (or after the loop); this only keeps a failure from counting as unhandled meanwhile.
      writing.catch(() => undefined)
    }
    await writing
    return { ...report, skippedTransactions: changes.skippedTransactions }
  } catch (error) {
    throw classifyError(error, 'source', context, SourceQueryError)
  } finally {
    await writing.catch(() => undefined)
    await changes?.close()
    writer.release(writerBroken)
  }
}

/**
 * Applies batches to the bronze tables, with each relation as the batch's changes were sent. REPLICA IDENTITY FULL
 * tables are keyed by their primary key, asked of the source once per table.
 */
function bronzeApplier(source: Connection, schema: string): (batch: ChangeBatch) => (client: pg.ClientBase) => Promise<void> {
  const primaryKeys = new Map<number, Promise<readonly string[]>>()
  const primaryKey = (oid: number) => {
    let key = primaryKeys.get(oid)
    if (!key) primaryKeys.set(oid, (key = source.withClient((client) => primaryKeyOf(client, oid))))
    return key
  }
  return (batch) => async (client) => {
    const relations = new Map<string, BronzeRelation>()
    const seen = new Set<Extract<PgOutputMessage, { tag: 'relation' }>>()
    const add = async (relation: Extract<PgOutputMessage, { tag: 'relation' }>) => {
      if (seen.has(relation)) return
      seen.add(relation)
      const keyed = relation.replicaIdentity === 'f' ? { ...relation, primaryKey: await primaryKey(relation.relationOid) } : relation
      relations.set(`${relation.schema}.${relation.table}`, keyed)
    }
    for (const transaction of batch.transactions) {
      for (const change of transaction.changes) {
        if (change.kind === 'row') await add(change.relation)
        if (change.kind === 'truncate') for (const relation of change.relations) if (relation) await add(relation)
      }
    }
    await applyChanges(client, schema, relations, batch.records())
  }
}
