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
}

/** The tables snapshotted for a slot, as `tableKey`s. */
export async function capturedTables(client: pg.ClientBase, schema: string, slot: string): Promise<Set<string>> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    `select schema_name as schema, table_name as table from ${qualifiedName(schema, 'cdc_tables')} where slot = $1`,
    [slot],
  )
  return new Set(rows.map(tableKey))
}

/** Records a table's snapshot, inside the caller's transaction (the one that copied it). */
export async function recordCapturedTable(
  client: pg.ClientBase,
  schema: string,
  slot: string,
  table: { readonly schema: string; readonly table: string },
  snapshot: { readonly lsn: string | null; readonly rows: number | null; readonly reason: 'initial' | 'slot lost' | 'added to publication' | 'column added' | 'seeded' },
): Promise<void> {
  await client.query(
    `insert into ${qualifiedName(schema, 'cdc_tables')} (slot, schema_name, table_name, snapshot_lsn, snapshot_rows, reason) values ($1, $2, $3, $4, $5, $6)
     on conflict (slot, schema_name, table_name) do update
       set snapshot_lsn = excluded.snapshot_lsn, snapshot_rows = excluded.snapshot_rows, reason = excluded.reason, snapshotted_at = now()`,
    [slot, table.schema, table.table, snapshot.lsn, snapshot.rows, snapshot.reason],
  )
}

/** Forgets a slot's tables (a snapshot of everything starts over). */
export async function forgetCapturedTables(client: pg.ClientBase, schema: string, slot: string): Promise<void> {
  await client.query(`delete from ${qualifiedName(schema, 'cdc_tables')} where slot = $1`, [slot])
}
