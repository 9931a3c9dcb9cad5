import type pg from 'pg'
import { SchemaDriftError, sqlStateOf, type ColumnDrift, type ErrorContext } from '../errors.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import type { Column } from '../pg/types.js'
import { commonType, typeHolds, type CatalogType } from './type-widening.js'

/** What an existing bronze table needs before it can take a stream's rows without losing a value. */
export interface ColumnPlan {
  /** False when the table does not exist yet. */
  readonly exists: boolean
  /** Stream columns the table lacks: added (older rows get NULL). */
  readonly add: readonly Column[]
  /**
   * Bronze columns that cannot hold every value of the stream's type, and the type each is altered to: the stream's,
   * or one that holds both (`numeric(12,2)` and `numeric(12,4)`: `numeric(14,4)`). Either holds every value the
   * bronze column has, so the change loses nothing.
   */
  readonly widen: readonly { readonly column: string; readonly from: string; readonly type: string }[]
  /** Stream columns whose values the bronze column cannot hold, and that it cannot be widened to hold losslessly. */
  readonly drift: readonly ColumnDrift[]
}

interface BronzeColumn extends CatalogType {
  /** `format_type(atttypid, atttypmod)`. */
  readonly type: string
}

/**
 * Compares the stream's columns with the bronze table's. A column whose type is the same, or narrower (every value
 * of the stream's type is a value of the bronze type: `numeric(10,2)` into `numeric(12,4)`, `int4` into `int8`), is
 * written as it is. A wider one (`int4` -> `numeric`, `varchar(10)` -> `varchar(50)`, `timestamp(0)` ->
 * `timestamp(6)`; `numeric(12,2)` -> `numeric(12,4)` makes `numeric(14,4)`) widens the bronze column: without that,
 * PostgreSQL rounds or truncates the new values on the way in, or fails. Any other change is drift. Bronze columns
 * the stream no longer has are kept (new rows get NULL there). See docs/sinks.md.
 */
export async function planColumns(client: pg.ClientBase, schema: string, table: string, columns: readonly Column[]): Promise<ColumnPlan> {
  const bronze = await bronzeColumns(client, schema, table)
  if (!bronze) return { exists: false, add: columns, widen: [], drift: [] }
  const add = columns.filter((column) => !bronze.has(column.name))
  // Types printed alike are alike (stream types come from format_type too); only the others are parsed.
  const changed = columns.filter((column) => {
    const current = bronze.get(column.name)
    return current !== undefined && current.type !== column.type
  })
  const widen: { column: string; from: string; type: string }[] = []
  const drift: ColumnDrift[] = []
  const streamTypes = await catalogTypes(client, changed)
  changed.forEach((column, index) => {
    const current = bronze.get(column.name) as BronzeColumn
    const incoming = streamTypes[index] as CatalogType
    if (typeHolds(current, incoming)) return
    const wider = typeHolds(incoming, current) ? column.type : commonType(current, incoming)
    if (wider !== undefined) widen.push({ column: column.name, from: current.type, type: wider })
    else drift.push({ column: column.name, bronzeType: current.type, sourceType: column.type })
  })
  return { exists: true, add, widen, drift }
}

/** Whether the plan asks for no change of the table. */
export function isReady(plan: ColumnPlan): boolean {
  return plan.exists && plan.add.length === 0 && plan.widen.length === 0 && plan.drift.length === 0
}

/** Fails, naming every drifted column, before anything is written. */
export function refuseDrift(plan: ColumnPlan, schema: string, table: string, context: ErrorContext): void {
  if (plan.drift.length === 0) return
  const target = `${schema}.${table}`
  const listed = plan.drift.map((drift) => `"${drift.column}" is ${drift.bronzeType} in ${target} and ${drift.sourceType} in the source`)
  throw new SchemaDriftError(
    `the source's column types changed in a way ${target} cannot take without losing values: ${listed.join('; ')}. ` +
      `Nothing was written. Alter the bronze column to a type that holds both ` +
      `(alter table ${qualifiedName(schema, table)} alter column ${quoteIdent(plan.drift[0]!.column)} type ...), ` +
      `cast the column to the bronze type in a query source, or rebuild the table with mode 'replace'`,
    plan.drift,
    { context: { ...context, column: plan.drift[0]!.column } },
  )
}

/**
 * Adds the missing columns and widens the drifted ones in one `ALTER TABLE`, in the caller's transaction: a failed
 * run undoes it. Widening takes an ACCESS EXCLUSIVE lock and may rewrite the table (numeric scale, int -> int8);
 * a longer varchar or an unconstrained type does not rewrite it.
 */
export async function alterColumns(client: pg.ClientBase, schema: string, table: string, plan: ColumnPlan, context: ErrorContext): Promise<void> {
  const actions = [
    ...plan.add.map((column) => `add column ${quoteIdent(column.name)} ${column.type}`),
    ...plan.widen.map((widen) => `alter column ${quoteIdent(widen.column)} type ${widen.type}`),
  ]
  if (actions.length === 0) return
  try {
    await client.query(`alter table ${qualifiedName(schema, table)} ${actions.join(', ')}`)
  } catch (error) {
    // A view or rule on a column stops its type change (0A000): say which columns needed it and what to do.
    if (plan.widen.length === 0 || sqlStateOf(error) !== '0A000') throw error
    const drift = plan.widen.map((widen) => ({ column: widen.column, bronzeType: widen.from, sourceType: widen.type }))
    throw new SchemaDriftError(
      `${schema}.${table} must widen ${drift.map((d) => `"${d.column}" from ${d.bronzeType} to ${d.sourceType}`).join(', ')} to take the source's values, ` +
        `and PostgreSQL refused (${(error as Error).message}). Nothing was written. Drop the views or rules on those columns, ` +
        `run again, then create them again; or rebuild the table with mode 'replace'`,
      drift,
      { context: { ...context, column: drift[0]?.column }, cause: error },
    )
  }
}

/** The table's columns by name, with their catalog types; undefined when the table does not exist. */
async function bronzeColumns(client: pg.ClientBase, schema: string, table: string): Promise<Map<string, BronzeColumn> | undefined> {
  const { rows } = await client.query<{ name: string | null; oid: number; typmod: number; type: string; element: number | null }>(
    `select a.attname as name, a.atttypid as oid, a.atttypmod as typmod, format_type(a.atttypid, a.atttypmod) as type,
            case when t.typcategory = 'A' and t.typelem <> 0 then t.typelem end as element
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
       left join pg_type t on t.oid = a.atttypid
      where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')`,
    [schema, table],
  )
  if (rows.length === 0) return undefined
  const columns = new Map<string, BronzeColumn>()
  for (const { name, oid, typmod, type, element } of rows) {
    if (name === null) continue
    const catalog = { oid: Number(oid), typmod: Number(typmod), type }
    columns.set(name, element === null ? catalog : { ...catalog, elementOid: Number(element) })
  }
  return columns
}

/**
 * The stream's column types as the warehouse parses them: the OID and modifier of `null::<type>` in a result's row
 * description. The type texts were checked to be lone type names (checkColumnTypes), as they are for the DDL.
 */
async function catalogTypes(client: pg.ClientBase, columns: readonly Column[]): Promise<CatalogType[]> {
  if (columns.length === 0) return []
  const { fields } = await client.query(`select ${columns.map((column, index) => `null::${column.type} as c${index}`).join(', ')}`)
  const { rows } = await client.query<{ oid: number; element: number }>(
    `select oid, typelem as element from pg_type where oid = any($1::oid[]) and typcategory = 'A' and typelem <> 0`,
    [fields.map((field) => field.dataTypeID)],
  )
  const elements = new Map(rows.map((row) => [Number(row.oid), Number(row.element)]))
  return fields.map((field) => {
    const element = elements.get(field.dataTypeID)
    return element === undefined
      ? { oid: field.dataTypeID, typmod: field.dataTypeModifier }
      : { oid: field.dataTypeID, typmod: field.dataTypeModifier, elementOid: element }
  })
}
