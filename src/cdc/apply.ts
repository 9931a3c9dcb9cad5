import type pg from 'pg'
import { valueToText } from '../pg/copy-text-encoder.js'
import { quoteIdent } from '../pg/identifiers.js'
import { literal } from '../pg/inline-parameters.js'
import { bronzeKey, bronzeTableName, CDC_EXTRACTION_TYPE, bronzeColumnTypes, LINEAGE_COLUMNS, type BronzeRelation, type Lineage } from './bronze-table.js'
import type { ChangeRecord } from './change-records.js'
import { UNCHANGED, type RelationColumn, type TupleValue } from './pgoutput.js'
import type { CommittedTransaction } from './transactions.js'
import { tableKey } from './table-snapshot.js'

/**
 * Applies changes to `<schema>.br_<table>`, in order, inside the caller's transaction (the one that writes the
 * change log and the slot position), so the bronze tables move exactly with the log:
 * - insert: upsert by the key;
 * - update: the sent columns are upserted by the key; a changed key moves the row with an UPDATE. Columns pgoutput did
 *   not send (unchanged TOAST values) are never touched: the stored value stands;
 * - delete: by the old key; truncate: the whole table.
 * A REPLICA IDENTITY FULL table without a primary key has no key: its updates and deletes match one row with all the
 * old values pgoutput sent (compared as text, so every type compares), and its inserts are plain inserts.
 * The bronze tables must be ready (`prepareBronzeTable`), as a capture makes them before it applies.
 *
 * Changes are applied in runs, each one statement, whatever other tables' changes come between (bronze tables have no
 * foreign keys, so only the order within a table matters), with the result of one statement per change:
 * - a table's consecutive upserts with the same columns: `INSERT ... SELECT ... FROM unnest($1::text[], ...) ON
 *   CONFLICT (key) DO UPDATE` (a key met twice in a run keeps its last row, as the later statement would have);
 * - its consecutive deletes: `DELETE ... USING unnest(...)` joined on every key column (a row-value `IN` list of a
 *   composite key is not planned as index lookups);
 * - on a table without a key, consecutive plain inserts, deletes, or updates with the same columns: each old tuple
 *   takes one row of equal old values (the n-th change with a given old tuple the n-th such row, so of two identical
 *   rows one delete removes exactly one), found in one scan of the table; an update whose old tuple equals the new
 *   tuple of an earlier update in its run starts a new run, as it may mean the row that update wrote.
 * Values travel as text arrays (one parameter per column) and are cast to the bronze column's type on the server.
 * Key moves are applied one change at a time, in order with the runs of their table.
 *
 * With `lineage`, every row an insert or update writes gets the lineage columns (`LINEAGE_COLUMNS`, which
 * `prepareBronzeTable` adds): `_bronze_loaded_at` the warehouse transaction's time (`now()`), `_bronze_source`,
 * `_bronze_schema` and `_bronze_table` the source's, `_bronze_extraction_type` `'cdc'`, and `_bronze_lsn` the commit
 * LSN of the change's transaction. They are never matched on: a keyless table's rows are found by the source's columns.
 */
export async function applyChanges(
  client: pg.ClientBase,
  schema: string,
  relations: ReadonlyMap<string, BronzeRelation>,
  changes: readonly ChangeRecord[],
  lineage?: Lineage,
): Promise<void> {
  const applier = new Applier(client, schema, lineage)
  for (const change of changes) {
    if (!change.schema_name || !change.table_name) continue
    const name = tableKey({ schema: change.schema_name, table: change.table_name })
    const relation = relations.get(name)
    if (!relation) continue
    if (change.operation === 'truncate') await applier.truncate(name, relation)
    else if (change.operation !== 'message') {
      const columns = relation.columns
      // The record's old row (or old key), in the relation's column order; a column it does not hold is not matched on.
      const old = change.old_data ?? (change.operation === 'delete' ? change.key : null)
      const newTuple = change.data ? tupleOf(columns, change.data) : undefined
      await applier.row(name, relation, columns, change.operation, newTuple, old ? tupleOf(columns, old) : undefined, change.commit_lsn)
    }
  }
  await applier.finish()
}

/**
 * The same as `applyChanges`, straight from committed transactions (pgoutput's text values, no records built): what a
 * capture applies. `relations` maps each table (`tableKey`: names with dots never collide) to the relation keyed as
 * bronze keys it (see `BronzeRelation`).
 */
export async function applyTransactions(
  client: pg.ClientBase,
  schema: string,
  relations: ReadonlyMap<string, BronzeRelation>,
  transactions: readonly CommittedTransaction[],
  lineage?: Lineage,
): Promise<void> {
  const applier = new Applier(client, schema, lineage)
  for (const transaction of transactions) {
    const lsn = transaction.commitLsn.text
    for (const change of transaction.changes) {
      if (change.kind === 'truncate') {
        for (const sent of change.relations) {
          const relation = sent && relations.get(tableKey(sent))
          if (sent && relation) await applier.truncate(tableKey(sent), relation)
        }
      } else if (change.kind === 'row') {
        const name = tableKey(change.relation)
        const relation = relations.get(name)
        if (!relation) continue
        await applier.row(name, relation, change.relation.columns, change.operation, change.newTuple, change.oldTuple, lsn)
      }
    }
  }
  await applier.finish()
}

function tupleOf(columns: readonly RelationColumn[], values: Record<string, unknown>): TupleValue[] {
  return columns.map((column) => (Object.hasOwn(values, column.name) ? text(values[column.name]) : UNCHANGED))
}

function text(value: unknown): string | null {
  return value === null || value === undefined ? null : valueToText(value)
}

type Text = string | null

interface Table {
  readonly target: string
  /** The key's column indexes, by the relation columns they were found in. */
  readonly keyIndexes: WeakMap<readonly RelationColumn[], readonly number[]>
  /** Each bronze column's SQL type (`format_type`), which values are cast to. */
  readonly types: ReadonlyMap<string, string>
  readonly key: readonly string[]
  /**
   * With lineage: the SQL of the lineage columns' values but `_bronze_lsn` (`now()` and the table's constants), in
   * `LINEAGE_COLUMNS` order; each row's `_bronze_lsn` travels as one more text array.
   */
  readonly lineage: readonly string[] | undefined
}

const LINEAGE_NAMES = LINEAGE_COLUMNS.map((column) => column.name)

/**
 * Consecutive changes of one kind to one table with the same columns (other tables' changes between them or not).
 * `values[i]` holds the text of `columns[i]`'s value for every row of the run, ready to be sent as one array.
 */
interface Run {
  readonly kind: 'upsert' | 'delete' | 'insert' | 'match-delete' | 'match-update'
  readonly table: Table
  readonly signature: string
  /** Upsert, insert: the columns written. Delete: the key. Match: the old values' columns, then the new values'. */
  readonly columns: readonly string[]
  /** match-*: how many of `columns` are old values. */
  readonly matched: number
  readonly values: Text[][]
  /** Keyed runs: row index by key text, so a key met again replaces its row (the last one wins). */
  readonly byKey: Map<string, number> | undefined
  /** match-update: the new tuples written so far, by their text. */
  readonly written: Set<string> | undefined
  /** With lineage, for runs that write rows: each row's commit LSN (`_bronze_lsn`). */
  readonly lsns: Text[] | undefined
  rows: number
  lastColumns: readonly RelationColumn[]
  lastFirst: readonly number[]
  lastSecond: readonly number[]
}

const NONE: readonly number[] = []

/** Rows per statement: bounded only to keep one statement's arrays a reasonable size. */
const MAX_RUN_ROWS = 50_000

/** Every column index of a tuple of `length` columns: one array per length, so runs compare it by identity. */
const ALL: number[][] = []

/** The indexes of the columns a tuple sent (unchanged TOAST values are not). */
function sent(tuple: readonly TupleValue[]): readonly number[] {
  if (!tuple.includes(UNCHANGED)) return (ALL[tuple.length] ??= Array.from({ length: tuple.length }, (_, index) => index))
  const indexes: number[] = []
  for (let index = 0; index < tuple.length; index++) if (tuple[index] !== UNCHANGED) indexes.push(index)
  return indexes
}

/** A text[] literal of text values (NULL for null), for one `$n::text[]` parameter. */
function textArray(values: readonly Text[], count: number): string {
  const parts = new Array<string>(count)
  for (let index = 0; index < count; index++) {
    const value = values[index]
    parts[index] = value === null || value === undefined ? 'NULL' : `"${ARRAY_SPECIAL.test(value) ? value.replace(ARRAY_ESCAPE, '\\$&') : value}"`
  }
  return `{${parts.join(',')}}`
}
const ARRAY_SPECIAL = /["\\]/
const ARRAY_ESCAPE = /["\\]/g

/** A tuple's values at `indexes` as one string (NULL and '' told apart), to compare tuples of one run. */
function tupleText(indexes: readonly number[], tuple: readonly TupleValue[]): string {
  return JSON.stringify(indexes.map((index) => tuple[index] ?? null))
}

class Applier {
  readonly #tables = new Map<string, Table>()
  // One open run per table: bronze tables have no foreign keys, so only the order within a table matters.
  readonly #runs = new Map<string, Run>()
  /** The commit LSN of the change being added. */
  #lsn: Text = null

  constructor(
    private readonly client: pg.ClientBase,
    private readonly schema: string,
    private readonly lineage: Lineage | undefined,
  ) {}

  async #table(name: string, relation: BronzeRelation): Promise<Table> {
    let table = this.#tables.get(name)
    if (!table) {
      const target = bronzeTableName(this.schema, relation)
      const lineage = this.lineage && ['now()', ...[this.lineage.source, relation.schema, relation.table, CDC_EXTRACTION_TYPE].map((value) => literal(value))]
      table = { target, types: await bronzeColumnTypes(this.client, target), key: bronzeKey(relation), keyIndexes: new WeakMap(), lineage }
      this.#tables.set(name, table)
    }
    return table
  }

  async truncate(name: string, relation: BronzeRelation): Promise<void> {
    const table = await this.#table(name, relation)
    await this.#flush(table)
    await this.client.query(`truncate ${table.target}`)
  }

  /** One row change; `columns` are the relation's columns as the change was sent (its tuples' order). */
  async row(
    name: string,
    relation: BronzeRelation,
    columns: readonly RelationColumn[],
    operation: 'insert' | 'update' | 'delete',
    newTuple: readonly TupleValue[] | undefined,
    oldTuple: readonly TupleValue[] | undefined,
    /** The commit LSN of the change's transaction. */
    lsn: string,
  ): Promise<void> {
    this.#lsn = lsn
    const table = await this.#table(name, relation)
    const { key } = table
    if (key.length === 0) {
      // No key: inserts are plain inserts; updates and deletes match rows by every old value sent.
      if (operation === 'insert' || !oldTuple) {
        if (operation !== 'delete' && newTuple) await this.#add(table, 'insert', columns, sent(newTuple), newTuple)
        return
      }
      if (operation === 'delete') await this.#add(table, 'match-delete', columns, sent(oldTuple), oldTuple)
      else if (newTuple) await this.#add(table, 'match-update', columns, sent(oldTuple), oldTuple, sent(newTuple), newTuple)
      return
    }
    let keyIndexes = table.keyIndexes.get(columns)
    if (!keyIndexes) table.keyIndexes.set(columns, (keyIndexes = key.map((column) => columns.findIndex((candidate) => candidate.name === column))))
    if (operation === 'delete') {
      const source = oldTuple ?? newTuple
      if (source) await this.#add(table, 'delete', columns, keyIndexes, source)
      return
    }
    if (!newTuple) return
    // A changed key moves the row (an UPDATE keeps the columns pgoutput did not send); a row not there is inserted.
    const moved =
      oldTuple !== undefined &&
      keyIndexes.some((index) => {
        const before = oldTuple[index]
        return before !== UNCHANGED && before !== undefined && before !== newTuple[index]
      })
    const written = sent(newTuple)
    if (!moved) {
      await this.#add(table, 'upsert', columns, written, newTuple, undefined, undefined, keyIndexes)
      return
    }
    await this.#flush(table)
    const names = written.map((index) => (columns[index] as RelationColumn).name)
    const values = written.map((index) => newTuple[index] as Text)
    const set = [...names.map((column, index) => `${quoteIdent(column)} = $${index + 1}`), ...lineageSet(table, `$${names.length + key.length + 1}::pg_lsn`)]
    const where = key.map((column, index) => `${quoteIdent(column)} = $${names.length + index + 1}`).join(' and ')
    const lsnValue = table.lineage ? [lsn] : []
    const result = await this.client.query(`update ${table.target} set ${set.join(', ')} where ${where}`, [
      ...values,
      ...keyIndexes.map((index) => oldTuple[index] as Text),
      ...lsnValue,
    ])
    if (result.rowCount !== 1) {
      await this.client.query(
        insertStatement(table, names, key),
        [...values, ...lsnValue].map((value) => textArray([value], 1)),
      )
    }
  }

  /**
   * Adds a change to its table's open run when it continues it, else applies that run and opens a new one. The run
   * takes the values of `tuple` at `first` (and of `secondTuple` at `second`).
   */
  async #add(
    table: Table,
    kind: Run['kind'],
    columns: readonly RelationColumn[],
    first: readonly number[],
    tuple: readonly TupleValue[],
    second: readonly number[] = NONE,
    secondTuple?: readonly TupleValue[],
    keyIndexes?: readonly number[],
  ): Promise<void> {
    const names = (indexes: readonly number[]) => indexes.map((index) => (columns[index] as RelationColumn).name)
    let run = this.#runs.get(table.target)
    // The same relation columns and column indexes as the run's last change: the same columns, without naming them.
    const same = run !== undefined && run.lastColumns === columns && run.lastFirst === first && run.lastSecond === second
    const signature = same ? (run as Run).signature : `${names(first).join('\u0000')}\u0001${names(second).join('\u0000')}`
    let continues = run !== undefined && run.kind === kind && run.signature === signature && run.rows < MAX_RUN_ROWS
    // An update whose old tuple an earlier update of the run wrote may mean that row: it waits for the run to be applied.
    if (continues && run?.written?.has(tupleText(first, tuple))) continues = false
    if (!run || !continues) {
      await this.#flush(table)
      const all = [...names(first), ...names(second)]
      run = {
        kind,
        table,
        signature,
        columns: all,
        matched: first.length,
        values: all.map(() => []),
        byKey: kind === 'upsert' || kind === 'delete' ? new Map() : undefined,
        written: kind === 'match-update' ? new Set() : undefined,
        lsns: table.lineage && kind !== 'delete' && kind !== 'match-delete' ? [] : undefined,
        rows: 0,
        lastColumns: columns,
        lastFirst: first,
        lastSecond: second,
      }
      this.#runs.set(table.target, run)
    }
    run.lastColumns = columns
    run.lastFirst = first
    run.lastSecond = second
    let row = run.rows
    if (run.byKey) {
      const indexes = keyIndexes ?? first
      const id = indexes.length === 1 ? String(tuple[indexes[0] as number]) : JSON.stringify(indexes.map((index) => tuple[index]))
      const seen = run.byKey.get(id)
      if (seen === undefined) run.byKey.set(id, run.rows++)
      else row = seen // the last row of a key wins, as the later statement would have
    } else {
      run.rows++
    }
    if (run.lsns) run.lsns[row] = this.#lsn
    let column = 0
    for (const index of first) (run.values[column++] as Text[])[row] = tuple[index] as Text
    if (secondTuple) {
      for (const index of second) (run.values[column++] as Text[])[row] = secondTuple[index] as Text
      // The row as the update left it, in the run's old columns (a column it did not send kept its old value).
      run.written?.add(JSON.stringify(first.map((index) => (secondTuple[index] === UNCHANGED ? tuple[index] : secondTuple[index]) ?? null)))
    }
  }

  async #flush(table: Table): Promise<void> {
    const run = this.#runs.get(table.target)
    if (!run) return
    this.#runs.delete(table.target)
    await applyRun(this.client, run)
  }

  async finish(): Promise<void> {
    for (const run of [...this.#runs.values()]) await this.#flush(run.table)
  }
}

/**
 * `$n::text[]` for each column, unnested as `u(v1, v2, ...)`; `cast(i)` is the i-th value cast to its column's type.
 * `lsn`: one more array, of each row's `_bronze_lsn`, unnested as `u.lsn`.
 */
function unnest(table: Table, columns: readonly string[], offset = 0, ordinality = false, lsn = false): { from: string; cast: (index: number) => string } {
  const parameters = [...columns, ...(lsn ? ['lsn'] : [])].map((_, index) => `$${offset + index + 1}::text[]`).join(', ')
  const aliases = [...columns.map((_, index) => `v${index + 1}`), ...(lsn ? ['lsn'] : []), ...(ordinality ? ['ord'] : [])].join(', ')
  return {
    from: `unnest(${parameters})${ordinality ? ' with ordinality' : ''} as u(${aliases})`,
    cast: (index) => `u.v${index + 1}::${table.types.get(columns[index] as string) ?? 'text'}`,
  }
}

/** `column = value` for each lineage column of a table that has them; `lsn` is the SQL of `_bronze_lsn`'s value. */
function lineageSet(table: Table, lsn: string): string[] {
  if (!table.lineage) return []
  return [...table.lineage, lsn].map((value, index) => `${quoteIdent(LINEAGE_NAMES[index] as string)} = ${value}`)
}

/**
 * INSERT of text arrays, one per column (upserted by `key`, when there is one); with lineage, one more array holds
 * each row's `_bronze_lsn`, and the lineage columns are written (and updated on conflict) too.
 */
function insertStatement(table: Table, columns: readonly string[], key: readonly string[]): string {
  const { from, cast } = unnest(table, columns, 0, false, table.lineage !== undefined)
  const values = [...columns.map((_, index) => cast(index)), ...(table.lineage ? [...table.lineage, 'u.lsn::pg_lsn'] : [])].join(', ')
  const written = table.lineage ? [...columns, ...LINEAGE_NAMES] : columns
  return `insert into ${table.target} (${written.map(quoteIdent).join(', ')}) select ${values} from ${from}${onConflict(key, written)}`
}

/** The ON CONFLICT clause of an upsert by `key` that sets `columns` (none without a key). */
function onConflict(key: readonly string[], columns: readonly string[]): string {
  if (key.length === 0) return ''
  const updates = columns.filter((column) => !key.includes(column)).map((column) => `${quoteIdent(column)} = excluded.${quoteIdent(column)}`)
  return ` on conflict (${key.map(quoteIdent).join(', ')}) do ${updates.length ? `update set ${updates.join(', ')}` : 'nothing'}`
}

async function applyRun(client: pg.ClientBase, run: Run): Promise<void> {
  const { table, columns } = run
  const values = run.values.map((column) => textArray(column, run.rows))
  if (run.lsns) values.push(textArray(run.lsns, run.rows))
  switch (run.kind) {
    case 'upsert':
    case 'insert':
      await client.query(insertStatement(table, columns, run.kind === 'upsert' ? table.key : []), values)
      return
    case 'delete': {
      const { from, cast } = unnest(table, columns)
      const on = columns.map((column, index) => `t.${quoteIdent(column)} = ${cast(index)}`).join(' and ')
      await client.query(`delete from ${table.target} t using ${from} where ${on}`, values)
      return
    }
    default:
      await client.query(matchStatement(run), values)
  }
}

/**
 * Updates or deletes, on a table without a key, one row per old tuple: rows and old tuples are matched by the text of
 * every old value sent (the row's `column::text` against the old value cast to the column's type and back to text,
 * so json, point and the like compare too), as a row value's text, in which NULL and '' differ. The n-th old tuple of
 * a given text takes the n-th row of that text (row_number on both sides), so duplicates are taken one each. An update
 * that finds no row inserts its new values, as the change-at-a-time statement did.
 */
function matchStatement(run: Run): string {
  const { table, columns, matched } = run
  const { from, cast } = unnest(table, columns, 0, true, run.lsns !== undefined)
  const old = columns.slice(0, matched)
  const sourceText = old.length ? `row(${old.map((_, index) => `${cast(index)}::text`).join(', ')})::text` : `''`
  const rowText = old.length ? `row(${old.map((column) => `${quoteIdent(column)}::text`).join(', ')})::text` : `''`
  const pairs = `changes as (
      select u.*, ${sourceText} as m, row_number() over (partition by ${sourceText} order by u.ord) as n from ${from}),
    candidates as (
      select ctid, m, row_number() over (partition by m) as n
        from (select ctid, ${rowText} as m from ${table.target}) r where m in (select m from changes)),
    pairs as (select candidates.ctid, changes.* from candidates join changes using (m, n))`
  if (run.kind === 'match-delete') return `with ${pairs} delete from ${table.target} t using pairs where t.ctid = pairs.ctid`
  const written = columns.slice(matched)
  const lineage = run.lsns !== undefined
  const set = [
    ...written.map((column, index) => `${quoteIdent(column)} = ${cast(matched + index)}`),
    ...(lineage ? lineageSet(table, 'u.lsn::pg_lsn') : []),
  ].join(', ')
  const insertValues = [...written.map((_, index) => cast(matched + index)), ...(lineage && table.lineage ? [...table.lineage, 'u.lsn::pg_lsn'] : [])].join(
    ', ',
  )
  const insertColumns = lineage ? [...written, ...LINEAGE_NAMES] : written
  return `with ${pairs},
    updated as (update ${table.target} t set ${set} from pairs u where t.ctid = u.ctid returning u.ord)
    insert into ${table.target} (${insertColumns.map(quoteIdent).join(', ')})
    select ${insertValues} from changes u where u.ord not in (select ord from updated)`
}
