import type pg from 'pg'
import { parseArrayLiteral } from '../pg/array-literal.js'
import { describeFields } from '../pg/catalog.js'
import { checkIdentifier, qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { literal } from '../pg/inline-parameters.js'
import type { Column } from '../pg/types.js'
import { ConfigError } from '../errors.js'
import { BRONZE_COLUMNS } from '../transforms/bronze-metadata.js'
import { planColumns } from '../sinks/schema-drift.js'
import { ensureSchema, lockForDdl, prepareTable, requireUniqueKey } from '../sinks/warehouse-ddl.js'
import type { RelationColumn } from './pgoutput.js'

/**
 * The lineage columns of a capture's bronze rows: those a batch extraction through `bronzeMetadata()` adds
 * (`BRONZE_COLUMNS`), then `_bronze_lsn`, the commit LSN of the change that last wrote the row (for rows a snapshot
 * copied, the snapshot's position). So a table's rows carry the same lineage whichever way they came.
 */
export const LINEAGE_COLUMNS: readonly Column[] = Object.freeze([...BRONZE_COLUMNS, { name: '_bronze_lsn', type: 'pg_lsn', typeOid: 3220 }])

/** `_bronze_extraction_type` of rows a capture's changes wrote, and of rows a snapshot copied. */
export const CDC_EXTRACTION_TYPE = 'cdc'
export const CDC_SNAPSHOT_EXTRACTION_TYPE = 'cdc_snapshot'

/** The lineage values of the rows one capture writes to one table, but the per-row `_bronze_lsn`. */
export interface Lineage {
  /** The source connection's label, password redacted (`redact(connection.label)`). */
  readonly source: string
}

/** What the warehouse needs to know of a source table to keep `<schema>.br_<table>` for it. */
export interface BronzeRelation {
  readonly schema: string
  readonly table: string
  readonly columns: readonly RelationColumn[]
  /** d default, n nothing, f full, i index (pgoutput's Relation message). */
  readonly replicaIdentity: string
  /** The source's primary key, for REPLICA IDENTITY FULL tables (pgoutput then flags every column as key). */
  readonly primaryKey?: readonly string[] | undefined
}

/** `br_<table>`: a relation's bronze table, named by the table alone. */
export function bronzeTable(relation: BronzeRelation): string {
  return checkIdentifier(`br_${relation.table}`, 'table')
}

export function bronzeTableName(schema: string, relation: BronzeRelation): string {
  return qualifiedName(schema, bronzeTable(relation))
}

/**
 * The columns rows are matched by: the replica identity, or with REPLICA IDENTITY FULL the primary key when there is
 * one. Empty for a FULL table without a primary key: its rows are matched by all their old values.
 */
export function bronzeKey(relation: BronzeRelation): readonly string[] {
  if (relation.replicaIdentity === 'f') return relation.primaryKey ?? []
  return relation.columns.filter((column) => column.isKey).map((column) => column.name)
}

/**
 * A relation's columns typed as every sink types them (`describeFields`: built-in types exact, a domain as its base
 * type, other user-defined types as text), asked of the source, whose catalog the OIDs belong to. So a table gets the
 * same bronze columns whether a batch extraction or a capture made it.
 */
export function bronzeColumns(source: pg.ClientBase, relation: BronzeRelation): Promise<Column[]> {
  return describeFields(
    source,
    relation.columns.map((column) => ({ name: column.name, dataTypeID: column.typeOid, dataTypeModifier: column.typeModifier })),
  )
}

/**
 * Makes `<schema>.br_<table>` ready for a relation's rows, in the caller's transaction, with the batch sinks' DDL
 * (`prepareTable`): created with the key as primary key when missing, its columns followed by the lineage columns
 * (`LINEAGE_COLUMNS`; a table a batch extraction through `bronzeMetadata()` made gets `_bronze_lsn` added); columns the relation gained added (ALTER TABLE
 * ... ADD COLUMN on the source arrives as a new Relation message); columns whose type got wider widened; any other
 * type change refused with `SchemaDriftError`. Columns the relation lost are kept (later rows leave them as they were).
 * A keyed table made by someone else must have a unique index on the key, which apply upserts by.
 *
 * `missing`: the value rows that existed before ALTER TABLE ... ADD COLUMN ... DEFAULT got (the source's
 * `attmissingval`; no change is ever sent for them). A column added here gets it as its default, so bronze rows made
 * before, and rows inserted later by changes sent before the ALTER, hold it as the source's rows do.
 */
export async function prepareBronzeTable(
  client: pg.ClientBase,
  schema: string,
  relation: BronzeRelation,
  columns: readonly Column[],
  missing: ReadonlyMap<string, string> = new Map(),
): Promise<void> {
  const table = bronzeTable(relation)
  const key = bronzeKey(relation)
  const clash = columns.find((column) => LINEAGE_COLUMNS.some((lineage) => lineage.name === column.name))
  if (clash) {
    throw new ConfigError(
      'apply',
      `${relation.schema}.${relation.table} has a column "${clash.name}", which bronze tables use for lineage; rename it on the source, or capture without apply`,
    )
  }
  await ensureSchema(client, schema)
  if (missing.size) await addWithMissingValues(client, schema, table, columns, missing)
  await prepareTable(client, schema, table, [...columns, ...LINEAGE_COLUMNS], key, { schema: relation.schema, table: relation.table })
  if (key.length) await requireUniqueKey(client, schema, table, key)
}

/**
 * The SQL type of each column of `<schema>.br_<table>` (`format_type`), for statements that cast to it. The capture
 * made the table ready (`prepareBronzeTable`) earlier in the same transaction.
 */
export async function bronzeColumnTypes(client: pg.ClientBase, target: string): Promise<ReadonlyMap<string, string>> {
  const { rows } = await client.query<{ name: string; type: string }>(
    `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a
      where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped`,
    [target],
  )
  if (rows.length === 0) throw new Error(`${target} was not prepared before changes were applied to it`)
  return new Map(rows.map((row) => [row.name, row.type]))
}

/** What the source says of the values its existing rows hold in columns that may be new to bronze. */
export interface ExistingValues {
  /**
   * The value rows that predate `ADD COLUMN ... DEFAULT <constant>` hold (`pg_attribute.attmissingval`, a
   * one-element array of the column's type, read as text).
   */
  readonly missing: ReadonlyMap<string, string>
  /**
   * Columns with a default whose existing rows' values the catalog no longer tells (a volatile default rewrote the
   * table, or a later rewrite materialized the missing value): no change ever carries them, only a copy of the table.
   */
  readonly unknown: ReadonlySet<string>
}

export async function existingValues(source: pg.ClientBase, relation: BronzeRelation & { readonly relationOid: number }): Promise<ExistingValues> {
  const { rows } = await source.query<{ name: string; value: string | null; delimiter: string; array: boolean; type: number; typmod: number }>(
    `select a.attname as name, case when a.atthasmissing then a.attmissingval::text end as value, t.typdelim::text as delimiter,
            t.typcategory = 'A' as array, a.atttypid::int as type, a.atttypmod as typmod
       from pg_attribute a join pg_type t on t.oid = a.atttypid
      where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped and (a.atthasmissing or a.atthasdef)`,
    [relation.relationOid],
  )
  const missing = new Map<string, string>()
  const unknown = new Set<string>()
  // The catalog is read now, the Relation message may be older: a column of that name with another type since (dropped
  // and added again) says nothing of this one's values.
  const sent = new Map(relation.columns.map((column) => [column.name, column]))
  for (const row of rows) {
    const column = sent.get(row.name)
    if (!column || column.typeOid !== row.type || column.typeModifier !== row.typmod) {
      unknown.add(row.name)
      continue
    }
    const [value] = row.value === null || row.array ? [undefined] : (parseArrayLiteral(row.value, (raw) => raw, row.delimiter) as (string | null)[])
    if (typeof value === 'string') missing.set(row.name, value)
    else if (row.value === null || row.array) unknown.add(row.name)
  }
  return { missing, unknown }
}

/** The columns among `columns` that an existing, non-empty `<schema>.br_<table>` lacks. */
export async function columnsNewToBronze(client: pg.ClientBase, schema: string, relation: BronzeRelation, columns: readonly Column[]): Promise<string[]> {
  const table = bronzeTable(relation)
  const plan = await planColumns(client, schema, table, columns)
  if (!plan.exists || plan.add.length === 0) return []
  const { rows } = await client.query(`select 1 from ${qualifiedName(schema, table)} limit 1`)
  return rows.length ? plan.add.map((column) => column.name) : []
}

async function addWithMissingValues(
  client: pg.ClientBase,
  schema: string,
  table: string,
  columns: readonly Column[],
  missing: ReadonlyMap<string, string>,
): Promise<void> {
  const plan = await planColumns(client, schema, table, columns)
  const added = plan.exists ? plan.add.filter((column) => missing.has(column.name)) : []
  if (added.length === 0) return
  await lockForDdl(client, schema, table)
  const clauses = added.map(
    (column) => `add column if not exists ${quoteIdent(column.name)} ${column.type} default ${literal(missing.get(column.name))}::${column.type}`,
  )
  await client.query(`alter table ${qualifiedName(schema, table)} ${clauses.join(', ')}`)
}
