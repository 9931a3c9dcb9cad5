import type pg from 'pg'
import { UnknownColumnError, UnknownTableError } from '../errors.js'
import type { Column } from './types.js'

/**
 * The type a sink table gets for a column. Built-in types keep their exact type and modifier
 * (`numeric(12,2)`, `character varying(20)`, `timestamp(3) with time zone`, arrays included).
 * A domain is carried as its base type. Enums, composites and other user-defined types may not exist
 * in the warehouse database, so they are carried as `text` (arrays of them as `text[]`); see docs/types.md.
 */
const ddlType = (oid: string, typmod: string): string => `
  case
    when tn.nspname = 'pg_catalog' then format_type(${oid}, ${typmod})
    when t.typtype = 'd' and bn.nspname = 'pg_catalog' then format_type(t.typbasetype, t.typtypmod)
    when t.typcategory = 'A' or bt.typcategory = 'A' then 'text[]'
    else 'text'
  end`

const TYPE_JOINS = `
  join pg_namespace tn on tn.oid = t.typnamespace
  left join pg_type bt on bt.oid = nullif(t.typbasetype, 0)
  left join pg_namespace bn on bn.oid = bt.typnamespace`

/**
 * An array's element delimiter when it is not ',': array_out separates elements with the element type's typdelim
 * (https://www.postgresql.org/docs/current/arrays.html#ARRAYS-IO), `;` for box.
 */
const ELEMENT_DELIMITER = `
  case when coalesce(bt.typcategory, t.typcategory) = 'A'
       then nullif((select et.typdelim from pg_type et where et.oid = coalesce(nullif(bt.typelem, 0), t.typelem)), ',')::text end`

const COLUMNS_SQL = `
  select a.attname as name,
         ${ddlType('a.atttypid', 'a.atttypmod')} as type,
         a.atttypid as "typeOid",
         coalesce(nullif(t.typbasetype, 0), t.oid) as "parseOid",
         case when coalesce(bt.typcategory, t.typcategory) = 'A'
              then coalesce(nullif(bt.typelem, 0), t.typelem) end as "elementOid",
         ${ELEMENT_DELIMITER} as delimiter,
         not a.attnotnull as nullable
  from pg_attribute a
  join pg_type t on t.oid = a.atttypid
  ${TYPE_JOINS}
  where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped
  order by a.attnum`

const TYPES_SQL = `
  select x.ord as ord,
         ${ddlType('x.oid', 'x.typmod')} as type,
         coalesce(nullif(t.typbasetype, 0), t.oid) as "parseOid",
         case when coalesce(bt.typcategory, t.typcategory) = 'A'
              then coalesce(nullif(bt.typelem, 0), t.typelem) end as "elementOid",
         ${ELEMENT_DELIMITER} as delimiter
  from unnest($1::oid[], $2::int4[]) with ordinality as x(oid, typmod, ord)
  join pg_type t on t.oid = x.oid
  ${TYPE_JOINS}
  order by x.ord`

export interface TableDescription {
  readonly oid: number
  /** pg_class.relkind: r table, p partitioned table, v view, m materialized view, f foreign table. */
  readonly kind: string
  readonly columns: readonly Column[]
}

/**
 * Reads a table's columns from the catalog. `schema` and `table` are matched exactly (no case folding, no
 * parsing of dots), so any name works. `only` keeps those columns, in that order, and names any unknown one.
 */
export async function describeTable(client: pg.ClientBase, schema: string, table: string, only?: readonly string[]): Promise<TableDescription> {
  const relation = await client.query<{ oid: number; kind: string; schema_exists: boolean }>(
    `select c.oid as oid, c.relkind as kind, true as schema_exists
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1 and c.relname = $2 and c.relkind in ('r','p','v','m','f')
     union all
     select null, null, exists (select 1 from pg_namespace where nspname = $1)
     limit 1`,
    [schema, table],
  )
  const found = relation.rows[0]
  if (!found || found.oid === null) {
    const context = { schema, table }
    if (found && !found.schema_exists) {
      throw new UnknownTableError(`schema "${schema}" does not exist (or the role cannot see it)`, { step: 'source', context })
    }
    throw new UnknownTableError(`table "${schema}"."${table}" does not exist (or the role cannot see it)`, {
      step: 'source',
      context,
    })
  }
  const result = await client.query<Column & { elementOid: number | null; delimiter: string | null }>(COLUMNS_SQL, [found.oid])
  const all: Column[] = result.rows.map(({ elementOid, delimiter, ...column }) => ({
    ...column,
    ...(elementOid === null ? {} : { elementOid }),
    ...(delimiter === null ? {} : { delimiter }),
  }))
  if (!only) return { oid: found.oid, kind: found.kind, columns: all }
  const byName = new Map(all.map((column) => [column.name, column]))
  const missing = only.filter((name) => !byName.has(name))
  if (missing.length) {
    throw new UnknownColumnError(
      `table "${schema}"."${table}" has no column ${missing.map((name) => `"${name}"`).join(', ')} (it has ${all
        .slice(0, 30)
        .map((column) => `"${column.name}"`)
        .join(', ')}${all.length > 30 ? ', ...' : ''})`,
      { step: 'source', context: { schema, table, column: missing[0] } },
    )
  }
  return { oid: found.oid, kind: found.kind, columns: only.map((name) => byName.get(name) as Column) }
}

/** Columns of a query result (from its RowDescription), with the same type mapping as table columns. */
export async function describeFields(
  client: pg.ClientBase,
  fields: readonly { name: string; dataTypeID: number; dataTypeModifier: number }[],
): Promise<Column[]> {
  if (fields.length === 0) return []
  const types = await client.query<{ type: string; parseOid: number; elementOid: number | null; delimiter: string | null }>(TYPES_SQL, [
    fields.map((field) => field.dataTypeID),
    fields.map((field) => field.dataTypeModifier),
  ])
  return fields.map((field, index) => {
    const info = types.rows[index]
    const column: Column = {
      name: field.name,
      type: info?.type ?? 'text',
      typeOid: field.dataTypeID,
      parseOid: info?.parseOid ?? field.dataTypeID,
    }
    return {
      ...column,
      ...(info?.elementOid == null ? {} : { elementOid: info.elementOid }),
      ...(info?.delimiter == null ? {} : { delimiter: info.delimiter }),
    }
  })
}

/** The columns of a table's primary key, in key order; empty when it has none. */
export async function primaryKeyOf(client: pg.ClientBase, relationOid: number): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `select a.attname as name
       from pg_index i cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
       join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
      where i.indrelid = $1 and i.indisprimary
      order by k.ord`,
    [relationOid],
  )
  return rows.map((row) => row.name)
}
