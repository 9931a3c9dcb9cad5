import type pg from 'pg'
import { copyIn } from '../pg/copy-in.js'
import { ensureCapturedTables } from './captured-tables.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { OID, type Column } from '../pg/types.js'

const json = { typeOid: OID.jsonb, type: 'jsonb', valueFormat: 'json' as const }
/** The change log's columns (`ChangeRecord`'s fields, then `_bronze_loaded_at`). */
export const CHANGE_LOG_COLUMNS: readonly Column[] = [
  { name: 'lsn', type: 'pg_lsn', typeOid: 3220 },
  { name: 'commit_lsn', type: 'pg_lsn', typeOid: 3220 },
  { name: 'commit_time', type: 'timestamptz', typeOid: OID.timestamptz },
  { name: 'xid', type: 'bigint', typeOid: OID.int8 },
  { name: 'seq', type: 'integer', typeOid: OID.int4 },
  { name: 'operation', type: 'text', typeOid: OID.text },
  { name: 'schema_name', type: 'text', typeOid: OID.text },
  { name: 'table_name', type: 'text', typeOid: OID.text },
  { name: 'key', ...json },
  { name: 'data', ...json },
  { name: 'old_data', ...json },
  { name: 'unchanged_columns', type: 'text[]', typeOid: 1009 },
  { name: '_bronze_loaded_at', type: 'timestamptz', typeOid: OID.timestamptz },
]

/**
 * The slot a change came through: the change log is keyed by it, so captures of several slots (publications) share
 * one warehouse schema even when one transaction changes tables of both. Not in the COPY lines: its default reads the
 * slot the writing transaction set (`set_config('pg_datakit.slot', ..., true)`).
 */
const SLOT_COLUMN = `slot text not null default coalesce(current_setting('pg_datakit.slot', true), '')`

/** Not written by the batches: its default stamps the start of the warehouse transaction that writes a batch. */
const LOADED_AT = CHANGE_LOG_COLUMNS[CHANGE_LOG_COLUMNS.length - 1]
/** The columns a batch's COPY text carries (all but `_bronze_loaded_at`). */
const WRITTEN = CHANGE_LOG_COLUMNS.slice(0, -1)
  .map((column) => quoteIdent(column.name))
  .join(', ')

export async function ensureChangeLog(client: pg.ClientBase, schema: string): Promise<void> {
  await client.query(`create schema if not exists ${quoteIdent(schema)}`)
  const changes = qualifiedName(schema, 'cdc_changes')
  await client.query(`create table if not exists ${changes} (
    ${SLOT_COLUMN}, ${CHANGE_LOG_COLUMNS.map((column) => `${quoteIdent(column.name)} ${column.type}${column === LOADED_AT ? ' not null default now()' : ''}`).join(', ')},
    primary key (slot, commit_lsn, seq))`)
  // A change log made before it was keyed by slot: two slots whose publications share a transaction collided there.
  const key = await client.query<{ name: string; columns: string[] }>(
    `select conname as name, array(select a.attname::text from unnest(c.conkey) k join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k) as columns
       from pg_constraint c where c.conrelid = to_regclass($1) and c.contype = 'p'`,
    [changes],
  )
  if (key.rows[0] && !key.rows[0].columns.includes('slot')) {
    await client.query(`alter table ${changes} add column if not exists ${SLOT_COLUMN}`)
    await client.query(`alter table ${changes} drop constraint ${quoteIdent(key.rows[0].name)}, add primary key (slot, commit_lsn, seq)`)
  }
  const state = qualifiedName(schema, 'cdc_state')
  await client.query(`create table if not exists ${state} (
    slot text primary key, last_commit_end_lsn pg_lsn not null, updated_at timestamptz not null, initial_snapshot text)`)
  await client.query(`alter table ${state} add column if not exists initial_snapshot text`)
  await ensureCapturedTables(client, schema)
}

/** What the warehouse holds for a slot: its position, and where an initial snapshot stands ('pending', 'done'). */
export async function readCaptureState(
  client: pg.ClientBase,
  schema: string,
  slot: string,
): Promise<{ readonly lsn: string; readonly initialSnapshot: string | null } | undefined> {
  const { rows } = await client.query<{ lsn: string; initial_snapshot: string | null }>(
    `select last_commit_end_lsn::text as lsn, initial_snapshot from ${qualifiedName(schema, 'cdc_state')} where slot = $1`,
    [slot],
  )
  return rows[0] ? { lsn: rows[0].lsn, initialSnapshot: rows[0].initial_snapshot } : undefined
}

/** The end LSN of the last transaction the warehouse holds for this slot (0/0 when none). */
export async function readDurableLsn(client: pg.ClientBase, schema: string, slot: string): Promise<string> {
  return (await readCaptureState(client, schema, slot))?.lsn ?? '0/0'
}

/** Stores the slot's position (it only moves forward), inside the caller's transaction. */
export async function storeDurableLsn(
  client: pg.ClientBase,
  schema: string,
  slot: string,
  lastCommitEndLsn: string,
  initialSnapshot?: 'pending' | 'done',
): Promise<void> {
  const state = qualifiedName(schema, 'cdc_state')
  await client.query(
    `insert into ${state} (slot, last_commit_end_lsn, updated_at, initial_snapshot) values ($1, $2, now(), $3)
     on conflict (slot) do update set last_commit_end_lsn = greatest(excluded.last_commit_end_lsn, ${state}.last_commit_end_lsn),
                                      updated_at = now(),
                                      initial_snapshot = coalesce(excluded.initial_snapshot, ${state}.initial_snapshot)`,
    [slot, lastCommitEndLsn, initialSnapshot ?? null],
  )
}

/**
 * Writes whole transactions (`copyText`: change log lines from `ChangeLogLines`, whole or in chunks) and the slot's position in one
 * warehouse transaction (with `apply`, the bronze tables too): either all of it lands or none does.
 */
export async function writeChanges(
  client: pg.ClientBase,
  schema: string,
  slot: string,
  copyText: string | Iterable<Buffer>,
  lastCommitEndLsn: string,
  apply?: (client: pg.ClientBase) => Promise<void>,
): Promise<void> {
  await client.query('begin')
  try {
    await client.query(`select set_config('pg_datakit.slot', $1, true)`, [slot])
    const chunks = typeof copyText === 'string' ? (copyText.length ? [Buffer.from(copyText)] : undefined) : copyText
    if (chunks) await copyIn(client, `copy ${qualifiedName(schema, 'cdc_changes')} (${WRITTEN}) from stdin`, chunks)
    if (apply) await apply(client)
    await storeDurableLsn(client, schema, slot, lastCommitEndLsn)
    await client.query('commit')
  } catch (error) {
    await client.query('rollback').catch(() => undefined)
    throw error
  }
}
