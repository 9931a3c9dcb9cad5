import type pg from 'pg'
import { valueToText } from '../pg/copy-text-encoder.js'
import { quoteIdent } from '../pg/identifiers.js'
import { bronzeKey, bronzeTableName, ensureBronzeTable, type BronzeRelation } from './bronze-table.js'
import type { ChangeRecord } from './change-records.js'

/**
 * Applies changes to `<schema>.br_<table>`, in order, inside the caller's transaction (the one that writes the
 * change log and the slot position), so the bronze tables move exactly with the log:
 * - insert: upsert by the key;
 * - update: the sent columns are upserted by the key; a changed key moves the row with an UPDATE. Columns pgoutput did
 *   not send (unchanged TOAST values) are never touched: the stored value stands;
 * - delete: by the old key; truncate: the whole table.
 * A REPLICA IDENTITY FULL table without a primary key has no key: its updates and deletes match one row with all the
 * old values pgoutput sent (compared as text, so every type compares), and its inserts are plain inserts.
 * Tables are created on first use (`ensureBronzeTable`). Row by row: one statement per change.
 */
export async function applyChanges(
  client: pg.ClientBase,
  schema: string,
  relations: ReadonlyMap<string, BronzeRelation>,
  changes: readonly ChangeRecord[],
): Promise<void> {
  const tables = new Map<string, ReadonlyMap<string, string>>()
  for (const change of changes) {
    if (!change.schema_name || !change.table_name) continue
    const name = `${change.schema_name}.${change.table_name}`
    const relation = relations.get(name)
    if (!relation) continue
    const target = bronzeTableName(schema, relation)
    let types = tables.get(name)
    if (!types) tables.set(name, (types = await ensureBronzeTable(client, target, relation)))
    const key = bronzeKey(relation)
    const data = change.data ?? {}
    if (change.operation === 'truncate') {
      await client.query(`truncate ${target}`)
    } else if (key.length === 0) {
      await applyWithoutKey(client, target, types, change)
    } else if (change.operation === 'delete') {
      await deleteByKey(client, target, key, change.key ?? change.old_data ?? {})
    } else if (change.operation === 'insert' || change.operation === 'update') {
      const oldKey = change.old_data ? Object.fromEntries(key.map((column) => [column, change.old_data?.[column]])) : undefined
      // A changed key moves the row (an UPDATE keeps the columns pgoutput did not send); a row not there is inserted.
      const moved = oldKey && key.some((column) => text(oldKey[column]) !== text(data[column]))
      if (!moved || !(await updateByKey(client, target, key, oldKey, data))) await upsert(client, target, key, data)
    }
  }
}

function text(value: unknown): string | null {
  return value === null || value === undefined ? null : valueToText(value)
}

async function deleteByKey(client: pg.ClientBase, target: string, key: readonly string[], values: Record<string, unknown>): Promise<void> {
  const where = key.map((column, index) => `${quoteIdent(column)} = $${index + 1}`).join(' and ')
  await client.query(`delete from ${target} where ${where}`, key.map((column) => text(values[column])))
}

async function updateByKey(
  client: pg.ClientBase,
  target: string,
  key: readonly string[],
  oldKey: Record<string, unknown>,
  data: Record<string, unknown>,
): Promise<boolean> {
  const columns = Object.keys(data)
  const set = columns.map((column, index) => `${quoteIdent(column)} = $${index + 1}`).join(', ')
  const where = key.map((column, index) => `${quoteIdent(column)} = $${columns.length + index + 1}`).join(' and ')
  const result = await client.query(`update ${target} set ${set} where ${where}`, [
    ...columns.map((column) => text(data[column])),
    ...key.map((column) => text(oldKey[column])),
  ])
  return result.rowCount === 1
}

async function upsert(client: pg.ClientBase, target: string, key: readonly string[], data: Record<string, unknown>): Promise<void> {
  const columns = Object.keys(data)
  const list = columns.map(quoteIdent).join(', ')
  const values = columns.map((_, index) => `$${index + 1}`).join(', ')
  const updates = columns.filter((column) => !key.includes(column)).map((column) => `${quoteIdent(column)} = excluded.${quoteIdent(column)}`)
  const conflict = key.length ? ` on conflict (${key.map(quoteIdent).join(', ')}) do ${updates.length ? `update set ${updates.join(', ')}` : 'nothing'}` : ''
  await client.query(`insert into ${target} (${list}) values (${values})${conflict}`, columns.map((column) => text(data[column])))
}

/**
 * A table without a key (REPLICA IDENTITY FULL, no primary key): one row that has every old value sent is updated or
 * deleted. Both sides are compared as the warehouse's text of the column's type, so types without an equality
 * operator (json, point, ...) match too.
 */
async function applyWithoutKey(client: pg.ClientBase, target: string, types: ReadonlyMap<string, string>, change: ChangeRecord): Promise<void> {
  const data = change.data ?? {}
  if (change.operation === 'insert' || !change.old_data) {
    if (change.operation !== 'delete') await upsert(client, target, [], data)
    return
  }
  const old = Object.entries(change.old_data)
  const match = old
    .map(([column], index) => `${quoteIdent(column)}::text is not distinct from $${index + 1}::${types.get(column) ?? 'text'}::text`)
    .join(' and ')
  const row = `(select ctid from ${target} where ${match || 'true'} limit 1)`
  const oldValues = old.map(([, value]) => text(value))
  if (change.operation === 'delete') {
    await client.query(`delete from ${target} where ctid = ${row}`, oldValues)
    return
  }
  const columns = Object.keys(data)
  const set = columns.map((column, index) => `${quoteIdent(column)} = $${old.length + index + 1}`).join(', ')
  const result = await client.query(`update ${target} set ${set} where ctid = ${row}`, [...oldValues, ...columns.map((column) => text(data[column]))])
  if (result.rowCount === 0) await upsert(client, target, [], data)
}
