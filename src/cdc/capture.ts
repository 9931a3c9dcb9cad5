import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { classifyError, ConfigError, ConnectionLostError, SinkWriteError, SourceQueryError } from '../errors.js'
import { checkIdentifier, quoteIdent } from '../pg/identifiers.js'
import { ensureChangeLog, readDurableLsn, writeChanges, type ChangeRecord } from './change-log.js'
import { lsnFromText, PgOutputDecoder, timestampText, UNCHANGED, type PgOutputMessage, type TupleValue } from './pgoutput.js'
import { ReplicationStream, type XLogData } from './replication-stream.js'
import { checkCdcReady, ensureSlot } from './slots.js'
import { tupleReader } from './tuple.js'
import { applyChanges } from './apply.js'

export interface CaptureOptions {
  readonly slot: string
  readonly publication: string
  /** The warehouse: the change log is `<schema>.cdc_changes`, the slot's position `<schema>.cdc_state`. */
  readonly to: Connection
  readonly schema?: string
  /** A batch is written when it holds this many changes... */
  readonly maxBatchChanges?: number
  /** ...or when its oldest change waited this long. */
  readonly maxBatchMs?: number
  readonly signal?: AbortSignal
  /**
   * Also apply the changes to `<schema>.br_<table>` (insert/update/delete/truncate by the replica identity) in the same
   * transaction as the change log. Default false.
   */
  readonly apply?: boolean
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

interface Transaction {
  readonly xid: number
  readonly commitLsn: string
  readonly commitTime: string
  readonly records: ChangeRecord[]
}

type Relation = Extract<PgOutputMessage, { tag: 'relation' }>

/**
 * Streams committed changes from a logical replication slot (pgoutput) into the warehouse's change log until
 * `signal` aborts. Delivery is effectively exactly once:
 * - whole transactions are written together with the slot's position (`cdc_state`) in one warehouse transaction;
 * - only then is that position reported to the server as flushed, so the slot never moves past a change the
 *   warehouse does not hold;
 * - after a restart the server resends from the slot's confirmed position, and transactions the warehouse already
 *   holds (commit end LSN <= the stored position) are skipped.
 */
export async function captureChanges(source: Connection, options: CaptureOptions): Promise<CaptureReport> {
  const schema = options.schema ?? 'bronze'
  checkIdentifier(schema, 'schema')
  const maxBatchChanges = options.maxBatchChanges ?? 10_000
  const maxBatchMs = options.maxBatchMs ?? 1_000
  const context = { slot: options.slot, publication: options.publication }
  await checkCdcReady(source, { publication: options.publication, slot: options.slot })
  await ensureSlot(source, options.slot)

  const writer = await options.to.acquire(options.signal)
  let writerBroken: Error | undefined
  let replication: pg.Client | undefined
  let stream: ReplicationStream | undefined
  try {
    await ensureChangeLog(writer, schema)
    let durable = lsnFromText(await readDurableLsn(writer, schema, options.slot)).value
    replication = await source.replicationClient()
    // The replication command takes plain quoted strings only: publication names are kept to plain identifiers.
    if (!/^[A-Za-z0-9_]+$/.test(options.publication)) {
      throw new ConfigError('publication', `"${options.publication}" must be letters, digits and "_" to be named in START_REPLICATION`)
    }
    const start = `START_REPLICATION SLOT ${quoteIdent(options.slot)} LOGICAL 0/0 (proto_version '2', publication_names '"${options.publication}"', messages 'true')`
    stream = new ReplicationStream(start, () => durable)

    const decoder = new PgOutputDecoder()
    const relations = new Map<number, { relation: Relation; read: (tuple: readonly TupleValue[]) => Record<string, unknown> }>()
    // A FIFO with a head index: Array#shift on a long array copies it, and the queue can hold 50,000 messages.
    let queue: XLogData[] = []
    let head = 0
    const queued = () => queue.length - head
    let wake: (() => void) | undefined
    let failure: unknown
    let ended = false
    let paused = false
    stream.on('xlog', (message: XLogData) => {
      queue.push(message)
      if (queued() > 50_000 && !paused) {
        paused = true
        stream?.pause(true)
      }
      wake?.()
    })
    stream.on('error', (error: unknown) => {
      failure = error
      wake?.()
    })
    stream.on('end', () => {
      ended = true
      wake?.()
    })
    const onAbort = () => wake?.()
    options.signal?.addEventListener('abort', onAbort)
    replication.query(stream as never)

    let current: Transaction | undefined
    let pending: Transaction[] = []
    let pendingChanges = 0
    let pendingSince = 0
    let lastEnd = ''
    const report = { transactions: 0, changes: 0, batches: 0, skippedTransactions: 0 }

    const flush = async () => {
      if (pending.length === 0) return
      // The socket keeps reading while a batch is written (receiving overlaps writing); the queue's own bound pauses it.
      // Stamped when the batch is written: `_bronze_loaded_at - commit_time` is each change's lag.
      const loadedAt = new Date().toISOString()
      const records = pending.flatMap((transaction) => transaction.records.map((change) => ({ ...change, _bronze_loaded_at: loadedAt })))
      try {
        const applied = options.apply
          ? (client: pg.ClientBase) =>
              applyChanges(
                client,
                schema,
                new Map([...relations.values()].map(({ relation }) => [`${relation.schema}.${relation.table}`, relation])),
                records,
              )
          : undefined
        await writeChanges(writer, schema, options.slot, records, lastEnd, applied)
      } catch (error) {
        writerBroken = error as Error
        throw classifyError(error, 'sink', { ...context, table: 'cdc_changes' }, SinkWriteError)
      }
      durable = lsnFromText(lastEnd).value
      report.transactions += pending.length
      report.changes += records.length
      report.batches++
      options.onBatch?.({ transactions: pending.length, changes: records.length, lastCommitEndLsn: lastEnd })
      pending = []
      pendingChanges = 0
      try {
        stream?.sendStatus(false)
      } catch {
        // The replication connection is gone; the warehouse has the batch and a restart resumes from it.
      }
    }

    const record = (transaction: Transaction, fields: Omit<ChangeRecord, 'commit_lsn' | 'commit_time' | 'xid' | 'seq' | '_bronze_loaded_at'>) =>
      transaction.records.push({
        ...fields,
        commit_lsn: transaction.commitLsn,
        commit_time: transaction.commitTime,
        xid: transaction.xid,
        seq: transaction.records.length,
        _bronze_loaded_at: '',
      })

    for (;;) {
      if (failure) throw failure
      if (options.signal?.aborted || ended) break
      const item = head < queue.length ? queue[head++] : undefined
      if (head > 4096 && head * 2 > queue.length) {
        queue = queue.slice(head)
        head = 0
      }
      if (!item) {
        if (pending.length && Date.now() - pendingSince >= maxBatchMs) {
          await flush()
          continue
        }
        await new Promise<void>((resolve) => {
          wake = resolve
          setTimeout(resolve, pending.length ? Math.max(1, maxBatchMs - (Date.now() - pendingSince)) : 1_000).unref()
        })
        wake = undefined
        continue
      }
      if (paused && queued() < 10_000) {
        paused = false
        stream.pause(false)
      }
      const message = decoder.decode(item.payload)
      const lsn = `${(item.walStart >> 32n).toString(16).toUpperCase()}/${(item.walStart & 0xffffffffn).toString(16).toUpperCase()}`
      switch (message.tag) {
        case 'relation':
          relations.set(message.relationOid, { relation: message, read: tupleReader(message) })
          break
        case 'begin':
          current = { xid: message.xid, commitLsn: message.finalLsn.text, commitTime: timestampText(message.commitTime), records: [] }
          break
        case 'insert':
        case 'update':
        case 'delete': {
          const target = relations.get(message.relationOid)
          if (!current || !target) throw new SourceQueryError(`pgoutput: a ${message.tag} without its transaction or relation`, { step: 'source', context })
          const newRow = message.tag === 'delete' ? undefined : target.read(message.newTuple)
          const oldRow = message.tag === 'insert' ? undefined : message.oldTuple ? target.read(message.oldTuple) : undefined
          const keyNames = target.relation.columns.filter((column) => column.isKey).map((column) => column.name)
          const keySource = oldRow ?? newRow ?? {}
          const unchanged = newRow ? Object.keys(newRow).filter((name) => newRow[name] === UNCHANGED) : []
          record(current, {
            lsn,
            operation: message.tag,
            schema_name: target.relation.schema,
            table_name: target.relation.table,
            key: keyNames.length ? Object.fromEntries(keyNames.map((name) => [name, keySource[name] === UNCHANGED ? newRow?.[name] : keySource[name]])) : null,
            data: newRow ? Object.fromEntries(Object.entries(newRow).filter(([, value]) => value !== UNCHANGED)) : null,
            old_data: oldRow ? Object.fromEntries(Object.entries(oldRow).filter(([, value]) => value !== UNCHANGED)) : null,
            unchanged_columns: unchanged,
          })
          break
        }
        case 'truncate':
          if (!current) break
          for (const oid of message.relationOids) {
            const target = relations.get(oid)
            record(current, {
              lsn,
              operation: 'truncate',
              schema_name: target?.relation.schema ?? null,
              table_name: target?.relation.table ?? null,
              key: null,
              data: { cascade: message.cascade, restart_identity: message.restartIdentity },
              old_data: null,
              unchanged_columns: [],
            })
          }
          break
        case 'message':
          if (current && message.transactional) {
            record(current, {
              lsn,
              operation: 'message',
              schema_name: null,
              table_name: null,
              key: null,
              data: { prefix: message.prefix, content: message.content.toString('utf8') },
              old_data: null,
              unchanged_columns: [],
            })
          }
          break
        case 'commit': {
          if (!current) break
          if (message.endLsn.value <= durable) {
            // Re-sent after a restart: the warehouse has it already.
            report.skippedTransactions++
          } else {
            // Kept even without changes: its end LSN still moves the slot's position forward.
            if (pending.length === 0) pendingSince = Date.now()
            pending.push(current)
            pendingChanges += current.records.length
            lastEnd = message.endLsn.text
          }
          current = undefined
          if (pendingChanges >= maxBatchChanges) await flush()
          break
        }
        default:
          break
      }
    }
    options.signal?.removeEventListener('abort', onAbort)
    // Whole transactions received so far are written; a transaction cut by the stop is re-sent next time.
    await flush()
    return { ...report, lastCommitEndLsn: lastEnd || (await readDurableLsn(writer, schema, options.slot)) }
  } catch (error) {
    const classified = classifyError(error, 'source', context, SourceQueryError)
    throw classified instanceof SourceQueryError && /terminat|closed|ECONNRESET/i.test(classified.message)
      ? new ConnectionLostError(classified.message, { step: 'source', context, cause: error })
      : classified
  } finally {
    if (replication && stream) await ReplicationStream.close(replication, stream)
    writer.release(writerBroken)
  }
}

