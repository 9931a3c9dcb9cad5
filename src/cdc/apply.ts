import type pg from 'pg'
import { valueToText } from '../pg/copy-text-encoder.js'
import { checkIdentifier, qualifiedName, quoteIdent } from '../pg/identifiers.js'
import type { ChangeRecord } from './change-records.js'
import type { RelationColumn } from './pgoutput.js'

/** What the applier knows of a source table, from its Relation message. */
export interface AppliedRelation {
  readonly schema: string
  readonly table: string
  readonly columns: readonly RelationColumn[]
}

const BUILTIN_OID_LIMIT = 16384

/**
 * Applies changes to `<schema>.br_<table>`, in order, inside the caller's transaction (the one that writes the
 * change log and the slot position), so the bronze tables move exactly with the log:
 * - insert: upsert by the key;
 * - update: the sent columns are upserted by the key; a changed key moves the row with an UPDATE. Columns pgoutput did
 *   not send (unchanged TOAST values) are never touched: the stored value stands;
 * - delete: by the old key; truncate: the whole table.
 * Tables are created on first use with the source's column types (built-in types by OID, others as text) and the
 * replica identity as primary key. Row by row: correct first; a set-based path is future work.
 */
export async function applyChanges(
  client: pg.ClientBase,
  schema: string,
  relations: ReadonlyMap<string, AppliedRelation>,
  changes: readonly ChangeRecord[],
): Promise<void> {
  const ready = new Set<string>()
  for (const change of changes) {
    if (!change.schema_name || !change.table_name) continue
    const name = `${change.schema_name}.${change.table_name}`
    const relation = relations.get(name)
    if (!relation) continue
    const target = qualifiedName(schema, checkIdentifier(`br_${relation.table}`, 'table'))
    if (!ready.has(name)) {
      await ensureTable(client, target, relation)
      ready.add(name)
    }
    const key = relation.columns.filter((column) => column.isKey).map((column) => column.name)
    switch (change.operation) {
      case 'truncate':
        await client.query(`truncate ${target}`)
        break
      case 'delete':
        await deleteByKey(client, target, key, change.key ?? {})
        break
      case 'insert':
      case 'update': {
        const data = change.data ?? {}
        const oldKey = change.old_data && key.length ? Object.fromEntries(key.map((column) => [column, change.old_data?.[column]])) : undefined
        // A changed key moves the row (an UPDATE keeps the columns pgoutput did not send); a row not there is inserted.
        if (oldKey && key.some((column) => text(oldKey[column]) !== text(data[column])) && (await updateByKey(client, target, key, oldKey, data))) break
        await upsert(client, target, key, data)
        break
      }
      default:
        break
    }
  }
}

async function ensureTable(client: pg.ClientBase, target: string, relation: AppliedRelation): Promise<void> {
  const types = await client.query<{ type: string }>(
    `select case when oid < ${BUILTIN_OID_LIMIT} then format_type(oid, nullif(typmod, -1)) else 'text' end as type
       from unnest($1::oid[], $2::int[]) with ordinality as t(oid, typmod, ord) order by ord`,
    [relation.columns.map((column) => column.typeOid), relation.columns.map((column) => column.typeModifier)],
  )
  const key = relation.columns.filter((column) => column.isKey).map((column) => quoteIdent(column.name))
  const body = relation.columns.map((column, index) => `${quoteIdent(column.name)} ${types.rows[index]?.type ?? 'text'}`).join(', ')
  await client.query(`create table if not exists ${target} (${body}${key.length ? `, primary key (${key.join(', ')})` : ''})`)
}

function text(value: unknown): string | null {
  return value === null || value === undefined ? null : valueToText(value)
}

async function deleteByKey(client: pg.ClientBase, target: string, key: readonly string[], values: Record<string, unknown>): Promise<void> {
  if (key.length === 0) return
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
