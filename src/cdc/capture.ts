import type { Connection } from '../connection/connection.js'
import { classifyError, SinkWriteError, SourceQueryError } from '../errors.js'
import { checkIdentifier } from '../pg/identifiers.js'
import { cdcSource, type CdcSource, type ChangeBatch } from './cdc-source.js'
import { relationsOf, transactionParts, PART_CHANGES, type AssemblerOptions, type CommittedTransaction } from './transactions.js'
import { bronzeApplier } from './bronze-applier.js'
import { ChangeLogLines } from './change-log-lines.js'
import type { InitialSnapshotReport } from './initial-snapshot.js'
import { ensureChangeLog, writeChanges } from './change-log.js'
import { startCapture } from './capture-start.js'
import { watchHealth, type CaptureHealth } from './capture-health.js'
import { timestampText } from './pgoutput.js'
import { silentLogger, type Logger } from '../logger.js'
import { PublicationWatch } from './publication-watch.js'

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
  /** Memory bounds of a transaction being received, beyond which it waits on local disk; see `cdcSource`. */
  readonly spill?: AssemblerOptions
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
  /**
   * A table that joins the publication after the capture's snapshot (only a capture that began with one promises
   * complete bronze tables): `'snapshot'` (default) copies it into bronze in the transaction of the first batch after
   * it is seen; `'error'` stops with `PublicationChangedError`. See `PublicationWatch` and docs/cdc.md.
   */
  readonly newTables?: 'snapshot' | 'error'
  /** Where the capture says what it does (snapshots, lag warnings); pino and console fit. Default: silent. */
  readonly logger?: Logger
  /**
   * The slot's standing (retained WAL, lag in bytes, last commit), every `healthIntervalMs` while the capture runs.
   * A promise it returns is awaited before the next reading; its failure is logged as a warning, like a failed reading.
   */
  readonly onHealth?: (health: CaptureHealth) => unknown
  /** Default 30,000 ms. */
  readonly healthIntervalMs?: number
  /** Retained WAL above which each health reading logs a warning. Default 1 GiB. */
  readonly maxRetainedWalBytes?: number
  /** How often an idle capture moves the slot to the server's position; see `cdcSource`. Default 10,000 ms. */
  readonly idlePositionMs?: number
  /**
   * After the initial snapshot is in the warehouse. A promise it returns is awaited before changes stream; if it
   * rejects, the capture stops with that error, as when it throws.
   */
  readonly onSnapshot?: (snapshot: InitialSnapshotReport) => unknown
  /**
   * After each batch is durable in the warehouse (and acknowledged to the server). A promise it returns is awaited
   * before the next batch is written; if it rejects, the capture stops with that error, as when it throws.
   */
  readonly onBatch?: (batch: { transactions: number; changes: number; lastCommitEndLsn: string }) => unknown
}

export interface CaptureReport {
  readonly transactions: number
  readonly changes: number
  readonly batches: number
  /** Transactions the warehouse already had (re-sent after a restart) and that were skipped. */
  readonly skippedTransactions: number
  /** Transactions that outgrew the memory bounds and waited on local disk until they were written. */
  readonly spilledTransactions: number
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
  const logger = options.logger ?? silentLogger
  // Ends the stream at once when a write fails, instead of when the next batch arrives.
  const stop = new AbortController()
  const onAbort = () => stop.abort()
  options.signal?.addEventListener('abort', onAbort, { once: true })
  const writer = await options.to.acquire(options.signal)
  let writerBroken: Error | undefined
  let changes: CdcSource | undefined
  // The batch being written; never left running when this returns (the writer goes back to the pool after it).
  let writing: Promise<void> = Promise.resolve()
  let health: { stop(): void } | undefined
  try {
    if (options.signal?.aborted) stop.abort()
    await ensureChangeLog(writer, schema)
    const start = await startCapture(source, writer, {
      slot: options.slot,
      publication: options.publication,
      schema,
      initialSnapshot: options.initialSnapshot ?? false,
      slotLost: options.slotLost ?? 'error',
      bronzeTables: options.apply ?? false,
      signal: options.signal,
    })
    if (start.snapshot) await options.onSnapshot?.(start.snapshot)
    const startAfter = start.startAfter
    // Only a capture that began with a snapshot promises complete bronze tables, and so snapshots tables that join.
    const watch = start.completeBronze
      ? await PublicationWatch.open(source, writer, {
          slot: options.slot,
          publication: options.publication,
          schema,
          newTables: options.newTables ?? 'snapshot',
          logger,
          signal: options.signal,
        })
      : undefined
    if (watch) {
      const joined = await watch.newTables([], true)
      if (joined.size) {
        await writer.query('begin')
        try {
          const snapshot = await watch.snapshot(writer, joined)
          await writer.query('commit')
          snapshot.committed()
        } catch (error) {
          await writer.query('rollback').catch(() => undefined)
          throw error
        }
      }
    }
    changes = cdcSource(source, {
      slot: options.slot,
      publication: options.publication,
      startAfter,
      createSlot: false,
      ...(options.maxBatchChanges !== undefined ? { maxBatchChanges: options.maxBatchChanges } : {}),
      ...(options.maxBatchMs !== undefined ? { maxBatchMs: options.maxBatchMs } : {}),
      ...(options.streaming !== undefined ? { streaming: options.streaming } : {}),
      ...(options.spill ? { spill: options.spill } : {}),
      ...(options.idlePositionMs !== undefined ? { idlePositionMs: options.idlePositionMs } : {}),
      signal: stop.signal,
    })
    const lines = new ChangeLogLines()
    const apply = options.apply
      ? bronzeApplier(source, schema, (relation, columns) => {
          // With a snapshot the watch has copied the table already: a column added changes its signature.
          if (watch) return
          logger.warn(
            { slot: options.slot, schema: relation.schema, table: relation.table, columns },
            'columns added with a default: the rows that existed keep NULL in bronze (no change carries their value); capture with initialSnapshot to have the table copied again',
          )
        })
      : undefined
    const report = { transactions: 0, changes: 0, batches: 0, spilledTransactions: 0, lastCommitEndLsn: startAfter }
    let lastCommitTime: string | null = null
    let lastBatchAt: number | null = null
    health = watchHealth(
      source,
      {
        slot: options.slot,
        logger,
        intervalMs: options.healthIntervalMs ?? 30_000,
        maxRetainedWalBytes: options.maxRetainedWalBytes ?? 2 ** 30,
        onHealth: options.onHealth,
      },
      () => ({ lastCommitEndLsn: report.lastCommitEndLsn, lastCommitTime, lastBatchAt }),
    )

    const write = async (batch: ChangeBatch, copyText: string | Iterable<Buffer>): Promise<void> => {
      let joined: { committed(): void } | undefined
      try {
        await writeChanges(writer, schema, options.slot, copyText, batch.lastCommitEndLsn, async (client) => {
          const relations = watch || apply ? relationsOf(batch.transactions) : []
          const fresh = watch ? await watch.newTables(relations) : undefined
          if (watch && fresh?.size) joined = await watch.snapshot(client, fresh)
          await apply?.(client, batch.transactions, relations)
        })
      } catch (error) {
        writerBroken = error as Error
        stop.abort()
        throw classifyError(error, 'sink', { ...context, table: 'cdc_changes' }, SinkWriteError)
      }
      joined?.committed()
      batch.acknowledge()
      report.transactions += batch.transactions.length
      report.spilledTransactions += batch.transactions.filter((transaction) => transaction.spilled).length
      report.changes += batch.changes
      report.batches++
      report.lastCommitEndLsn = batch.lastCommitEndLsn
      const newest = batch.transactions[batch.transactions.length - 1]
      if (newest) {
        lastCommitTime = timestampText(newest.commitTime)
        lastBatchAt = Date.now()
      }
      try {
        await options.onBatch?.({ transactions: batch.transactions.length, changes: batch.changes, lastCommitEndLsn: batch.lastCommitEndLsn })
      } catch (error) {
        // Stop reading at once, as a failed write does: the loop would notice only when the next batch arrives (up to
        // idlePositionMs later, on a quiet source).
        stop.abort()
        throw error
      }
    }

    for await (const batch of changes) {
      // Encoded while the previous batch is still being written: Node works while the warehouse does. A transaction
      // that waits on disk is encoded a part at a time as the COPY takes it.
      const copyText = batch.transactions.some((transaction) => transaction.spilled) ? encodeParts(lines, batch.transactions) : lines.encode(batch.transactions)
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
    health?.stop()
    options.signal?.removeEventListener('abort', onAbort)
    await writing.catch(() => undefined)
    await changes?.close()
    writer.release(writerBroken)
  }
}

/** Change log lines of transactions a part at a time (`PART_CHANGES` changes), as COPY chunks. */
function* encodeParts(lines: ChangeLogLines, transactions: readonly CommittedTransaction[]): Generator<Buffer> {
  for (const part of transactionParts(transactions, PART_CHANGES)) yield Buffer.from(lines.encode([part]))
}
