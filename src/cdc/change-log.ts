import type pg from 'pg'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { from as copyFrom } from 'pg-copy-streams'
import { rowEncoder } from '../pg/copy-text-encoder.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { OID, type Column } from '../pg/types.js'

/** One change as the change log stores it. */
export interface ChangeRecord {
  readonly lsn: string
  readonly commit_lsn: string
  readonly commit_time: string
  readonly xid: number
  /** Position of the change within its transaction (a truncate of several tables is several changes). */
  readonly seq: number
  readonly operation: 'insert' | 'update' | 'delete' | 'truncate' | 'message'
  readonly schema_name: string | null
  readonly table_name: string | null
  readonly key: Record<string, unknown> | null
  readonly data: Record<string, unknown> | null
  readonly old_data: Record<string, unknown> | null
  /** Columns an update left unchanged and pgoutput did not send (TOAST): their stored value stands. */
  readonly unchanged_columns: readonly string[]
  readonly _bronze_loaded_at: string
}

const json = { typeOid: OID.jsonb, type: 'jsonb', valueFormat: 'json' as const }
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

export async function ensureChangeLog(client: pg.ClientBase, schema: string): Promise<void> {
  await client.query(`create schema if not exists ${quoteIdent(schema)}`)
  await client.query(`create table if not exists ${qualifiedName(schema, 'cdc_changes')} (
    ${CHANGE_LOG_COLUMNS.map((column) => `${quoteIdent(column.name)} ${column.type}`).join(', ')},
    primary key (commit_lsn, seq))`)
  await client.query(`create table if not exists ${qualifiedName(schema, 'cdc_state')} (
    slot text primary key, last_commit_end_lsn pg_lsn not null, updated_at timestamptz not null)`)
}

/** The end LSN of the last transaction the warehouse holds for this slot (0 when none). */
export async function readDurableLsn(client: pg.ClientBase, schema: string, slot: string): Promise<string> {
  const { rows } = await client.query<{ lsn: string }>(
    `select last_commit_end_lsn::text as lsn from ${qualifiedName(schema, 'cdc_state')} where slot = $1`,
    [slot],
  )
  return rows[0]?.lsn ?? '0/0'
}

/**
 * Writes whole transactions and the slot's position in one warehouse transaction (with `apply`, the bronze tables
 * too): either all of it lands or none does.
 * The position only moves forward.
 */
export async function writeChanges(
  client: pg.ClientBase,
  schema: string,
  slot: string,
  records: readonly ChangeRecord[],
  lastCommitEndLsn: string,
  apply?: (client: pg.ClientBase) => Promise<void>,
): Promise<void> {
  const encode = rowEncoder(CHANGE_LOG_COLUMNS)
  await client.query('begin')
  try {
    if (records.length) {
      const list = CHANGE_LOG_COLUMNS.map((column) => quoteIdent(column.name)).join(', ')
      const stream = client.query(copyFrom(`copy ${qualifiedName(schema, 'cdc_changes')} (${list}) from stdin`))
      await pipeline(Readable.from([Buffer.from(encode(records as unknown as Record<string, unknown>[]))]), stream)
    }
    if (apply) await apply(client)
    await client.query(
      `insert into ${qualifiedName(schema, 'cdc_state')} (slot, last_commit_end_lsn, updated_at) values ($1, $2, now())
       on conflict (slot) do update set last_commit_end_lsn = greatest(excluded.last_commit_end_lsn, ${qualifiedName(schema, 'cdc_state')}.last_commit_end_lsn),
                                         updated_at = now()`,
      [slot, lastCommitEndLsn],
    )
    await client.query('commit')
  } catch (error) {
    await client.query('rollback').catch(() => undefined)
    throw error
  }
}
