import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { redact } from '../connection/redact.js'
import { ConfigError, SerializationFailureError } from '../errors.js'
import { quoteIdent } from '../pg/identifiers.js'
import { literal } from '../pg/inline-parameters.js'
import { forgetCapturedTables, recordCapturedTable } from './captured-tables.js'
import { copyPublishedTable, publishedTables, rewrittenSinceSnapshot } from './table-snapshot.js'
import { readCaptureState, storeDurableLsn } from './change-log.js'
import { checkCdcReady, dropSlot, slotStatus } from './slots.js'

export interface InitialSnapshotOptions {
  readonly slot: string
  readonly publication: string
  readonly schema: string
  readonly signal?: AbortSignal
  /** Why the snapshot is taken, as `<schema>.cdc_tables` records it. Default `'initial'`. */
  readonly reason?: 'initial' | 'slot lost'
}

export interface InitialSnapshotReport {
  /** Tables copied into `<schema>.br_<table>`, with their row counts. */
  readonly tables: readonly { readonly schema: string; readonly table: string; readonly rows: number }[]
  /** The slot's consistent point: streaming continues from here, with no gap and no overlap. */
  readonly consistentPoint: string
}

/**
 * The initial snapshot hand-off: creates the slot over the replication protocol with an exported snapshot
 * (`CREATE_REPLICATION_SLOT ... LOGICAL pgoutput EXPORT_SNAPSHOT`), copies every published table as of that snapshot
 * into `<schema>.br_<table>`, and stores the slot's consistent point as the captured position, all in one warehouse
 * transaction. The slot then streams exactly the transactions that commit after the snapshot: no gap, no overlap
 * (https://www.postgresql.org/docs/current/logicaldecoding-explanation.html#LOGICALDECODING-EXPLANATION-EXPORTED-SNAP).
 *
 * Restartable: the attempt is recorded (`initial_snapshot = 'pending'`) before the slot is made, so a run that dies
 * mid-copy leaves no bronze rows and its slot is dropped and made again by the next run. Does nothing when the
 * warehouse already holds a position for the slot.
 */
export async function takeInitialSnapshot(
  source: Connection,
  writer: pg.ClientBase,
  options: InitialSnapshotOptions,
): Promise<InitialSnapshotReport | undefined> {
  const { slot, publication, schema } = options
  const state = await readCaptureState(writer, schema, slot)
  if (state && state.initialSnapshot !== 'pending') return undefined
  // Before a slot is made: a missing publication would otherwise snapshot nothing and call it done.
  await checkCdcReady(source, { publication, slot })
  const existing = await slotStatus(source, slot)
  if (existing && !state) {
    throw new ConfigError(
      'slot',
      `slot "${slot}" exists but the warehouse holds no position for it, so an initial snapshot cannot line up with it; drop the slot (dropSlot) to start from a snapshot, or capture without initialSnapshot`,
    )
  }
  if (!state) await storeDurableLsn(writer, schema, slot, '0/0', 'pending')
  // Made by an earlier attempt that did not finish: nothing of it reached the warehouse.
  if (existing) await dropSlot(source, slot)

  const replication = await source.replicationClient()
  const reader = await source.acquire(options.signal)
  let readerBroken: Error | undefined
  try {
    const created = await replication.query<{ consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput EXPORT_SNAPSHOT`,
    )
    const { consistent_point: consistentPoint, snapshot_name: snapshot } = created.rows[0] as { consistent_point: string; snapshot_name: string }
    await reader.query('begin isolation level repeatable read read only')
    await reader.query(`set transaction snapshot ${literal(snapshot)}`)
    // The snapshot is imported: the replication connection that exported it may go.
    await replication.end()
    const published = await publishedTables(reader, publication)
    const rewritten = await rewrittenSinceSnapshot(reader, published)
    if (rewritten.length) {
      // Their rows are in a file the snapshot cannot see: copied now they would land empty, and no change re-sends them.
      throw new SerializationFailureError(
        `${rewritten.join(', ')} was rewritten (TRUNCATE, ALTER COLUMN TYPE, VACUUM FULL, ...) while the initial snapshot was taken, so its rows are not in the snapshot; run the capture again (the snapshot starts over)`,
        { step: 'source', context: { slot, publication, table: rewritten[0] } },
      )
    }
    const tables: { schema: string; table: string; rows: number }[] = []
    await writer.query('begin')
    try {
      await forgetCapturedTables(writer, schema, slot)
      for (const table of published) {
        const rows = await copyPublishedTable(reader, writer, schema, table, { source: redact(source.label), lsn: consistentPoint }, options.signal)
        tables.push({ schema: table.relation.schema, table: table.relation.table, rows })
        await recordCapturedTable(writer, schema, slot, table.relation, {
          lsn: consistentPoint,
          rows,
          reason: options.reason ?? 'initial',
          signature: table.signature,
        })
      }
      await storeDurableLsn(writer, schema, slot, consistentPoint, 'done')
      await writer.query('commit')
    } catch (error) {
      await writer.query('rollback').catch(() => undefined)
      throw error
    }
    await reader.query('commit')
    return { tables, consistentPoint }
  } catch (error) {
    readerBroken = error as Error
    throw error
  } finally {
    await replication.end().catch(() => undefined)
    reader.release(readerBroken)
  }
}
