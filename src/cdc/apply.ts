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
 * Tables are created on first use (`ensureBronzeTable`).
 *
 * A table's consecutive upserts with the same columns go in one multi-row INSERT ... ON CONFLICT, and its consecutive
 * deletes in one DELETE, whatever other tables' changes come between (bronze tables have no foreign keys, so only the
 * order within a table matters): the same result as one statement per change (a key met twice in a run keeps its last
 * row, as the later statement would have), without a round trip per change. Key moves and keyless tables are applied
 * one change at a time, in order with the runs of their table.
 */
export async function applyChanges(
  client: pg.ClientBase,
  schema: string,
  relations: ReadonlyMap<string, BronzeRelation>,
  changes: readonly ChangeRecord[],
): Promise<void> {
  const tables = new Map<string, ReadonlyMap<string, string>>()
  // One open run per table: bronze tables have no foreign keys, so only the order within a table matters.
  const runs = new Map<string, Run>()
  const flush = async (target: string) => {
    const run = runs.get(target)
    runs.delete(target)
    if (run) await applyRun(client, run)
  }
  // Adds a row to the table's open run when it continues it, else applies that run and opens a new one.
  const extend = async (kind: Run['kind'], target: string, key: readonly string[], columns: readonly string[], values: Record<string, unknown>) => {
    const signature = columns.join('\u0000')
    let run = runs.get(target)
    if (!run || run.kind !== kind || run.signature !== signature || run.rows.size >= maxRows(columns.length)) {
      await flush(target)
      runs.set(target, (run = { kind, target, key, columns, signature, rows: new Map() }))
    }
    const row = columns.map((column) => text(values[column]))
    const id = JSON.stringify(key.map((column) => text(values[column])))
    run.rows.delete(id) // the last row of a key wins, at the end of the run like its statement
    run.rows.set(id, row)
  }
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
      await flush(target)
      await client.query(`truncate ${target}`)
    } else if (key.length === 0) {
      await flush(target)
      await applyWithoutKey(client, target, types, change)
    } else if (change.operation === 'delete') {
      await extend('delete', target, key, key, change.key ?? change.old_data ?? {})
    } else if (change.operation === 'insert' || change.operation === 'update') {
      const oldKey = change.old_data ? Object.fromEntries(key.map((column) => [column, change.old_data?.[column]])) : undefined
      // A changed key moves the row (an UPDATE keeps the columns pgoutput did not send); a row not there is inserted.
      const moved = oldKey && key.some((column) => text(oldKey[column]) !== text(data[column]))
      if (moved) {
        await flush(target)
        if (!(await updateByKey(client, target, key, oldKey, data))) await upsert(client, target, key, data)
      } else {
        await extend('upsert', target, key, Object.keys(data), data)
      }
    }
  }
  for (const target of [...runs.keys()]) await flush(target)
}

/** Consecutive changes of one kind to one table with the same columns (other tables' changes between them or not), by key (text). */
interface Run {
  readonly kind: 'upsert' | 'delete'
  readonly target: string
  readonly key: readonly string[]
  readonly columns: readonly string[]
  readonly signature: string
  readonly rows: Map<string, (string | null)[]>
}

/** Rows per statement: PostgreSQL takes at most 65,535 parameters. */
function maxRows(columns: number): number {
  return Math.max(1, Math.min(5_000, Math.floor(60_000 / Math.max(1, columns))))
}

async function applyRun(client: pg.ClientBase, run: Run): Promise<void> {
  const rows = [...run.rows.values()]
  if (run.kind === 'upsert') return insertRows(client, run.target, run.key, run.columns, rows)
  const key = `(${run.key.map(quoteIdent).join(', ')})`
  await client.query(`delete from ${run.target} where ${key} in (${tuples(rows.length, run.columns.length)})`, rows.flat())
}

/** `($1, $2), ($3, $4), ...`: the placeholders of `count` rows of `width` values. */
function tuples(count: number, width: number): string {
  const row = (index: number) => `(${Array.from({ length: width }, (_, column) => `$${index * width + column + 1}`).join(', ')})`
  return Array.from({ length: count }, (_, index) => row(index)).join(', ')
}

function text(value: unknown): string | null {
  return value === null || value === undefined ? null : valueToText(value)
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
  await insertRows(client, target, key, columns, [columns.map((column) => text(data[column]))])
}

/** Inserts rows of text values (upserted by `key`, when there is one). */
async function insertRows(
  client: pg.ClientBase,
  target: string,
  key: readonly string[],
  columns: readonly string[],
  rows: readonly (string | null)[][],
): Promise<void> {
  const values = tuples(rows.length, columns.length)
  await client.query(`insert into ${target} (${columns.map(quoteIdent).join(', ')}) values ${values}${onConflict(key, columns)}`, rows.flat())
}

/** The ON CONFLICT clause of an upsert by `key` that sets `columns` (none without a key). */
function onConflict(key: readonly string[], columns: readonly string[]): string {
  if (key.length === 0) return ''
  const updates = columns.filter((column) => !key.includes(column)).map((column) => `${quoteIdent(column)} = excluded.${quoteIdent(column)}`)
  return ` on conflict (${key.map(quoteIdent).join(', ')}) do ${updates.length ? `update set ${updates.join(', ')}` : 'nothing'}`
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
