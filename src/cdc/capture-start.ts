import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { ConfigError, SlotAheadError, SlotMissingError } from '../errors.js'
import { qualifiedName } from '../pg/identifiers.js'
import { connectionIdentity, databaseIdentity } from '../pg/database-identity.js'
import { readCaptureState, storeDurableLsn } from './change-log.js'
import { takeInitialSnapshot, type InitialSnapshotReport } from './initial-snapshot.js'
import { lsnFromText } from './pgoutput.js'
import { checkCdcReady, ensureSlot, slotStatus } from './slots.js'

export interface CaptureStartOptions {
  readonly slot: string
  readonly publication: string
  readonly schema: string
  readonly initialSnapshot: boolean
  readonly slotLost: 'error' | 'resnapshot'
  /** The capture keeps `<schema>.br_<table>` tables (apply, or a snapshot): each published table needs a valid name. */
  readonly bronzeTables: boolean
  readonly signal?: AbortSignal | undefined
}

export interface CaptureStart {
  /** The last commit end LSN the warehouse holds: where streaming picks up. */
  readonly startAfter: string
  readonly snapshot?: InitialSnapshotReport
  /** The capture began with a snapshot (now or earlier), so it promises complete bronze tables. */
  readonly completeBronze: boolean
}

/**
 * Decides where a capture starts, and refuses to start where it would silently skip changes:
 * - a slot the warehouse has a position for must still exist (else `SlotMissingError`, or a new snapshot when
 *   `slotLost: 'resnapshot'`): a new slot starts at the current WAL, and what was committed in between is gone;
 * - the slot must not have confirmed more than the warehouse holds (else `SlotAheadError`): the server never sends
 *   again what it was told is flushed.
 * A slot made here is recorded in the warehouse at once, so that losing it later is noticed even before its first
 * change lands. The slot's status is read before the warehouse's position: a capture running meanwhile stores a
 * position before it confirms it, so the order cannot make a healthy slot look ahead.
 */
export async function startCapture(source: Connection, writer: pg.ClientBase, options: CaptureStartOptions): Promise<CaptureStart> {
  const { slot, publication, schema } = options
  await checkCdcReady(source, { publication, slot })
  if (options.bronzeTables || options.initialSnapshot) {
    // Refused before anything streams, rather than at the table's first change on every restart.
    const long = await source.query<{ table: string }>(
      `select format('%I.%I', schemaname, tablename) as table from pg_publication_tables where pubname = $1 and octet_length('br_' || tablename) > 63`,
      [publication],
    )
    if (long.rows.length) {
      throw new ConfigError(
        'publication',
        `${long.rows.map((row) => row.table).join(', ')}: a bronze table is named br_<table>, which is longer than PostgreSQL's 63 bytes for these; leave them out of publication "${publication}" (or rename them)`,
      )
    }
  }
  if ((await databaseIdentity(writer)) === (await connectionIdentity(source))) {
    // The capture's own writes would be published: each batch would capture the one before it, without end.
    const own = await source.query<{ table: string }>(
      `select format('%I.%I', schemaname, tablename) as table from pg_publication_tables where pubname = $1 and schemaname = $2 limit 1`,
      [publication, schema],
    )
    if (own.rows[0]) {
      throw new ConfigError(
        'to',
        `the warehouse is the source database and publication "${publication}" publishes ${own.rows[0].table}, a table the capture writes: it would capture its own writes without end. Publish only the source's tables (not FOR ALL TABLES), or write to another database`,
      )
    }
  }
  const status = await slotStatus(source, slot)
  if (status) {
    const here = (await source.query<{ name: string }>('select current_database() as name')).rows[0]?.name
    if (status.database !== here) {
      throw new ConfigError('slot', `slot "${slot}" decodes database "${status.database}", not "${here}"; name another slot`)
    }
  }
  const state = await readCaptureState(writer, schema, slot)
  let resnapshot = false
  if (state && state.initialSnapshot !== 'pending') {
    const context = { slot, position: state.lsn }
    if (!status) {
      if (options.slotLost !== 'resnapshot') {
        throw new SlotMissingError(
          `replication slot "${slot}" is gone, but the warehouse holds changes up to ${state.lsn} from it: a new slot would start at the current WAL and lose every change committed since. ` +
            `If the slot was dropped or lost in a failover, capture again with slotLost: 'resnapshot' to copy the published tables anew (docs/cdc.md, "Slot lost")`,
          { step: 'source', context },
        )
      }
      await writer.query(`update ${qualifiedName(schema, 'cdc_state')} set initial_snapshot = 'pending', updated_at = now() where slot = $1`, [slot])
      resnapshot = true
    } else if (status.confirmedFlushLsn && lsnFromText(status.confirmedFlushLsn).value > lsnFromText(state.lsn).value) {
      throw new SlotAheadError(
        `replication slot "${slot}" has confirmed changes up to ${status.confirmedFlushLsn}, but the warehouse holds them only up to ${state.lsn}: ` +
          `the changes in between will not be sent again (the warehouse lost commits or was restored, or the slot was re-created). Re-snapshot: drop the slot and capture with initialSnapshot (docs/cdc.md, "Slot ahead of the warehouse")`,
        { step: 'source', context: { ...context, confirmed: status.confirmedFlushLsn } },
      )
    }
  }
  // A snapshot that an earlier run began is finished before anything streams, asked for this time or not.
  if (options.initialSnapshot || resnapshot || state?.initialSnapshot === 'pending') {
    const snapshot = await takeInitialSnapshot(source, writer, {
      slot,
      publication,
      schema,
      reason: resnapshot ? 'slot lost' : 'initial',
      ...(options.signal ? { signal: options.signal } : {}),
    })
    if (snapshot) return { startAfter: snapshot.consistentPoint, snapshot, completeBronze: true }
  }
  if (state) return { startAfter: state.lsn, completeBronze: state.initialSnapshot === 'done' }
  // The warehouse has no position: from now on it knows the slot (made here, or found).
  const made = status ? undefined : await ensureSlot(source, slot)
  const position = made?.consistentPoint ?? status?.confirmedFlushLsn ?? '0/0'
  await storeDurableLsn(writer, schema, slot, position)
  return { startAfter: position, completeBronze: false }
}
