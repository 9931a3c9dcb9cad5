import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { ConfigError } from '../errors.js'
import { classifyReplicationError } from './replication-errors.js'
import { quoteIdent } from '../pg/identifiers.js'
import { changeRecords, type ChangeRecord } from './change-records.js'
import { lsnFromBigInt, lsnFromText, PgOutputDecoder, type Lsn } from './pgoutput.js'
import { ReplicationStream, type XLogListener } from './replication-stream.js'
import { checkCdcReady, ensureSlot } from './slots.js'
import { TransactionAssembler, type AssemblerOptions, type CommittedTransaction } from './transactions.js'

export interface CdcSourceOptions {
  readonly slot: string
  readonly publication: string
  /**
   * The position the consumer already holds (the last commit end LSN it made durable): transactions that end at or
   * before it are skipped when the server re-sends them after a restart. Default: none.
   */
  readonly startAfter?: string
  /** A batch is yielded when it holds this many changes... (default 10,000) */
  readonly maxBatchChanges?: number
  /** ...or when its oldest transaction waited this long (default 1,000 ms). */
  readonly maxBatchMs?: number
  /**
   * Ask the server to send large in-progress transactions in parts (`streaming 'on'`, PostgreSQL 14+) instead of
   * spilling them to its disk until they commit; the parts are buffered by transaction and a transaction is still only
   * yielded once it commits (aborted ones never are). Default true.
   */
  readonly streaming?: boolean
  /** Create the slot (pgoutput) when it is missing. Default true. */
  readonly createSlot?: boolean
  /**
   * Memory bounds of a transaction being received: beyond them its changes go to a spill file on local disk (unlinked
   * at once) and are read back in chunks when it commits (`CommittedTransaction.chunks`). Defaults: 20,000 changes,
   * 16 MiB, the OS temp directory.
   */
  readonly spill?: AssemblerOptions
  /**
   * When nothing is pending (no transaction open, every batch acknowledged) the server is asked this often for its
   * position, and a batch with no transactions carries it: store and acknowledge it like any other, so the slot moves
   * past WAL that holds nothing published and the server can free it. Default 10,000 ms.
   */
  readonly idlePositionMs?: number
  readonly signal?: AbortSignal
}

/** Whole committed transactions, in commit order. */
export interface ChangeBatch {
  readonly transactions: readonly CommittedTransaction[]
  /** Changes in the batch (a truncate of several tables counts once per table). */
  readonly changes: number
  /**
   * The end LSN of the batch's last commit: what to store with the batch, and to pass as `startAfter` next time. A
   * batch without transactions carries the server's position while nothing published changed.
   */
  readonly lastCommitEndLsn: string
  /** The changes as records, values read through the lossless type map (docs/types.md). */
  records(): ChangeRecord[]
  /**
   * Tells the server the batch is durable where it went, so the slot may move past it and free the WAL. Call it only
   * after your sink committed the batch; until then the server keeps and re-sends it.
   */
  acknowledge(): void
}

type Options = Required<Pick<CdcSourceOptions, 'maxBatchChanges' | 'maxBatchMs' | 'streaming' | 'createSlot' | 'idlePositionMs'>> & CdcSourceOptions

/**
 * Committed changes from a logical replication slot (pgoutput, protocol 2), as batches of whole transactions.
 * Iterate it once; acknowledge each batch after your sink holds it; `close()` when done (`await using` works).
 *
 * @example
 * const changes = cdcSource(source, { slot: 'orders_slot', publication: 'orders_pub', startAfter: await myStoredLsn() })
 * try {
 *   for await (const batch of changes) {
 *     await mySink.write(batch.records(), batch.lastCommitEndLsn) // in one transaction
 *     batch.acknowledge()
 *   }
 * } finally {
 *   await changes.close()
 * }
 */
export function cdcSource(connection: Connection, options: CdcSourceOptions): CdcSource {
  return new CdcSource(connection, options)
}

export class CdcSource implements AsyncIterable<ChangeBatch> {
  readonly #connection: Connection
  readonly #options: Options
  #iterated = false
  #replication: pg.Client | undefined
  #stream: ReplicationStream | undefined
  /** The position reported to the server as flushed: only ever what the consumer acknowledged. */
  #durable = 0n
  #unacknowledged = 0
  #finished = false
  #closing: Promise<void> | undefined
  #skipped = 0
  #assembler: TransactionAssembler | undefined

  constructor(connection: Connection, options: CdcSourceOptions) {
    if (!/^[A-Za-z0-9_]+$/.test(options.publication)) {
      // START_REPLICATION takes the name inside a quoted string: plain identifiers only.
      throw new ConfigError('publication', `"${options.publication}" must be letters, digits and "_" to be named in START_REPLICATION`)
    }
    this.#connection = connection
    this.#options = Object.freeze({ maxBatchChanges: 10_000, maxBatchMs: 1_000, streaming: true, createSlot: true, idlePositionMs: 10_000, ...options })
    this.#durable = options.startAfter ? lsnFromText(options.startAfter).value : 0n
  }

  /** Transactions skipped because they end at or before `startAfter` (re-sent after a restart). */
  get skippedTransactions(): number {
    return this.#skipped
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ChangeBatch> {
    if (this.#iterated) throw new ConfigError('cdcSource', 'a cdcSource is iterated once; make a new one to read again')
    this.#iterated = true
    const { slot, publication, signal, maxBatchChanges, maxBatchMs } = this.#options
    const context = { slot, publication }
    try {
      await checkCdcReady(this.#connection, { publication, slot })
      if (this.#options.createSlot) await ensureSlot(this.#connection, slot)
      this.#replication = await this.#connection.replicationClient()
      const stream = new ReplicationStream(
        `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL 0/0 (proto_version '2', publication_names '"${publication}"', messages 'true'${this.#options.streaming ? `, streaming 'on'` : ''})`,
        () => this.#durable,
      )
      this.#stream = stream

      // Messages are decoded as they arrive (their bytes are only valid during the event); whole transactions wait in
      // `ready` until they make a batch. The socket pauses while two batches' worth wait, so memory stays bounded.
      const decoder = new PgOutputDecoder()
      const assembler = new TransactionAssembler(this.#options.spill)
      this.#assembler = assembler
      let ready: CommittedTransaction[] = []
      let readyChanges = 0
      let readySince = 0
      let wake: (() => void) | undefined
      let failure: unknown
      let ended = false
      let paused = false
      stream.on('xlog', ((walStart, payload) => {
        if (failure) return
        try {
          const transaction = assembler.push(decoder.decode(payload), walStart, payload.length)
          if (!transaction) return
          if (transaction.endLsn.value <= this.#durable) {
            this.#skipped++
            return
          }
          // Kept even without changes: its end LSN still moves the slot's position forward.
          if (ready.length === 0) readySince = Date.now()
          ready.push(transaction)
          readyChanges += transaction.changeCount
          if (readyChanges >= 2 * maxBatchChanges && !paused) {
            paused = true
            stream.pause(true)
          }
          if (ready.length === 1 || readyChanges >= maxBatchChanges) wake?.()
        } catch (error) {
          failure = error
          wake?.()
        }
      }) satisfies XLogListener)
      // The server's position while nothing is pending: everything it decoded before it was sent, so a consumer that
      // holds every batch holds everything up to it.
      let idlePosition = 0n
      // At most one such batch per idlePositionMs: writing it moves the WAL too (a warehouse on the same server).
      let idleSince = Date.now()
      const idle = () => ready.length === 0 && this.#unacknowledged === 0 && !assembler.inTransaction
      stream.on('keepalive', (walEnd: bigint) => {
        if (!idle() || walEnd <= this.#durable || walEnd <= idlePosition) return
        idlePosition = walEnd
        wake?.()
      })
      const askPosition = setInterval(() => {
        if (!idle()) return
        try {
          stream.sendStatus(true)
        } catch {
          // The connection is gone; the loop sees its error.
        }
      }, this.#options.idlePositionMs)
      askPosition.unref()
      stream.on('error', (error: unknown) => {
        failure ??= error
        wake?.()
      })
      stream.on('end', () => {
        ended = true
        wake?.()
      })
      const onAbort = () => wake?.()
      signal?.addEventListener('abort', onAbort)
      this.#replication.query(stream as never)

      /** Takes whole transactions from `ready` up to about `maxBatchChanges` (at least one). */
      const take = (): ChangeBatch => {
        let count = 0
        let changes = 0
        while (count < ready.length && (count === 0 || changes < maxBatchChanges)) changes += (ready[count++] as CommittedTransaction).changeCount
        const batch = this.#batch(ready.slice(0, count), changes)
        ready = ready.slice(count)
        // `readySince` stays: what is left arrived after it, so the wait bound holds (it may only come early).
        readyChanges -= changes
        if (paused && readyChanges < maxBatchChanges) {
          paused = false
          stream.pause(false)
        }
        return batch
      }
      try {
        for (;;) {
          if (failure) throw classifyReplicationError(failure, context)
          if (signal?.aborted || ended) break
          if (readyChanges >= maxBatchChanges || (ready.length && Date.now() - readySince >= maxBatchMs)) {
            yield take()
            continue
          }
          if (idlePosition > this.#durable && idle() && Date.now() - idleSince >= this.#options.idlePositionMs) {
            idleSince = Date.now()
            yield this.#batch([], 0, lsnFromBigInt(idlePosition))
            continue
          }
          await new Promise<void>((resolve) => {
            wake = resolve
            setTimeout(resolve, ready.length ? Math.max(1, maxBatchMs - (Date.now() - readySince)) : 1_000).unref()
          })
          wake = undefined
        }
      } finally {
        signal?.removeEventListener('abort', onAbort)
        clearInterval(askPosition)
      }
      // Whole transactions received so far; one cut by the stop is re-sent next time.
      while (ready.length) yield take()
    } catch (error) {
      throw classifyReplicationError(error, context)
    } finally {
      this.#finished = true
      // The last batches' acknowledgements still need the connection: it closes when they are in, or on close().
      if (this.#unacknowledged === 0) await this.close()
    }
  }

  #batch(transactions: CommittedTransaction[], changes: number, position?: Lsn): ChangeBatch {
    const end = position ?? (transactions[transactions.length - 1] as CommittedTransaction).endLsn
    let acknowledged = false
    this.#unacknowledged++
    return Object.freeze({
      transactions,
      changes,
      lastCommitEndLsn: end.text,
      records: () => changeRecords(transactions),
      acknowledge: () => {
        if (acknowledged) return
        acknowledged = true
        this.#unacknowledged--
        for (const transaction of transactions) transaction.release()
        if (end.value > this.#durable) this.#durable = end.value
        try {
          this.#stream?.sendStatus(false)
        } catch {
          // The connection is gone; the consumer holds the batch and a restart skips it (startAfter).
        }
        // A failure to close is the consumer's to see through its own close(), which returns this same promise.
        if (this.#finished && this.#unacknowledged === 0) this.close().catch(() => undefined)
      },
    })
  }

  /** Ends the replication connection (safe to call more than once). */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#assembler?.close()
      if (this.#replication && this.#stream) await ReplicationStream.close(this.#replication, this.#stream)
      else await this.#replication?.end().catch(() => undefined)
    })()
    return this.#closing
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
