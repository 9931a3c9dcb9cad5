import type pg from 'pg'
import { checkIdentifier, qualifiedName, quoteIdent } from '../pg/identifiers.js'
import type { RelationColumn } from './pgoutput.js'

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

const BUILTIN_OID_LIMIT = 16384

export function bronzeTableName(schema: string, relation: BronzeRelation): string {
  return qualifiedName(schema, checkIdentifier(`br_${relation.table}`, 'table'))
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
 * Creates `<schema>.br_<table>` if missing, with the source's column types (built-in types by OID and modifier,
 * others, such as enums and domains, as text) and the key as primary key. Returns each column's SQL type.
 */
export async function ensureBronzeTable(client: pg.ClientBase, target: string, relation: BronzeRelation): Promise<ReadonlyMap<string, string>> {
  const types = await client.query<{ type: string }>(
    `select case when oid < ${BUILTIN_OID_LIMIT} then format_type(oid, nullif(typmod, -1)) else 'text' end as type
       from unnest($1::oid[], $2::int[]) with ordinality as t(oid, typmod, ord) order by ord`,
    [relation.columns.map((column) => column.typeOid), relation.columns.map((column) => column.typeModifier)],
  )
  const key = bronzeKey(relation).map(quoteIdent)
  const body = relation.columns.map((column, index) => `${quoteIdent(column.name)} ${types.rows[index]?.type ?? 'text'}`).join(', ')
  await client.query(`create table if not exists ${target} (${body}${key.length ? `, primary key (${key.join(', ')})` : ''})`)
  return new Map(relation.columns.map((column, index) => [column.name, types.rows[index]?.type ?? 'text']))
}
