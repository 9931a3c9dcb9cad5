import type pg from 'pg'
import { qualifiedName } from '../pg/identifiers.js'
import { tableKey } from './table-snapshot.js'

/**
 * `<schema>.cdc_tables`: for a capture that keeps complete bronze tables (it began with a snapshot), the published
 * tables whose bronze copy was snapshotted, and at which source WAL position. A published table missing here has rows
 * from before it was published that no change will ever bring.
 */
export async function ensureCapturedTables(client: pg.ClientBase, schema: string): Promise<void> {
  await client.query(`create table if not exists ${qualifiedName(schema, 'cdc_tables')} (
    slot text not null, schema_name text not null, table_name text not null,
    snapshot_lsn pg_lsn, snapshot_rows bigint, reason text not null, snapshotted_at timestamptz not null default now(),
    primary key (slot, schema_name, table_name))`)
  await client.query(`alter table ${qualifiedName(schema, 'cdc_tables')} add column if not exists signature text`)
}

/** The tables snapshotted for a slot, as `tableKey`s, with the `PublishedTable.signature` each was copied with. */
export async function capturedTables(client: pg.ClientBase, schema: string, slot: string): Promise<Map<string, string | null>> {
  const { rows } = await client.query<{ schema: string; table: string; signature: string | null }>(
    `select schema_name as schema, table_name as table, signature from ${qualifiedName(schema, 'cdc_tables')} where slot = $1`,
    [slot],
  )
  return new Map(rows.map((row) => [tableKey(row), row.signature]))
}

export type CopyReason = 'initial' | 'slot lost' | 'added to publication' | 'table changed' | 'seeded'

/** Records a table's snapshot, inside the caller's transaction (the one that copied it). */
export async function recordCapturedTable(
  client: pg.ClientBase,
  schema: string,
  slot: string,
  table: { readonly schema: string; readonly table: string },
  snapshot: { readonly lsn: string | null; readonly rows: number | null; readonly reason: CopyReason; readonly signature: string | null },
): Promise<void> {
  await client.query(
    `insert into ${qualifiedName(schema, 'cdc_tables')} (slot, schema_name, table_name, snapshot_lsn, snapshot_rows, reason, signature) values ($1, $2, $3, $4, $5, $6, $7)
     on conflict (slot, schema_name, table_name) do update
       set snapshot_lsn = excluded.snapshot_lsn, snapshot_rows = excluded.snapshot_rows, reason = excluded.reason,
           signature = excluded.signature, snapshotted_at = now()`,
    [slot, table.schema, table.table, snapshot.lsn, snapshot.rows, snapshot.reason, snapshot.signature],
  )
}

/** Forgets a slot's tables (a snapshot of everything starts over). */
export async function forgetCapturedTables(client: pg.ClientBase, schema: string, slot: string): Promise<void> {
  await client.query(`delete from ${qualifiedName(schema, 'cdc_tables')} where slot = $1`, [slot])
}
