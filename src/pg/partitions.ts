import type pg from 'pg'
import { parsePartitionBound, type PartitionBound } from './partition-bound.js'

/** A leaf of a partition tree: a table that holds rows. */
export interface PartitionLeaf {
  readonly schema: string
  readonly table: string
  readonly oid: number
  /** Depth below the root (1 for a direct partition). */
  readonly level: number
  /** Bounds from the root's child down to this leaf. `path[0]` is the bound on the root's partition key. */
  readonly path: readonly PartitionBound[]
  /** The parent table this leaf is directly attached to. */
  readonly parent: { readonly schema: string; readonly table: string }
}

export interface PartitionTree {
  /** `pg_get_partkeydef` of the root, e.g. `RANGE (created_at)`. */
  readonly keyDefinition: string
  readonly strategy: 'range' | 'list' | 'hash'
  /** The root's key columns, when they are plain columns (not expressions). */
  readonly keyColumns: readonly string[]
  /** The type of the first key column as the server prints it. */
  readonly keyType: string | undefined
  readonly leaves: readonly PartitionLeaf[]
}

/**
 * Walks a partitioned table's tree through pg_inherits (sub-partitions and default partitions included) and
 * returns its leaves with their bounds, or undefined when the table is not partitioned.
 */
export async function discoverPartitions(client: pg.ClientBase, schema: string, table: string): Promise<PartitionTree | undefined> {
  const root = await client.query<{ oid: number; kind: string; keydef: string | null; keys: string[] | null; keytype: string | null }>(
    `select c.oid, c.relkind as kind, pg_get_partkeydef(c.oid) as keydef,
            (select array_agg(a.attname::text order by k.ord) from pg_partitioned_table p
                    cross join lateral unnest(p.partattrs::int2[]) with ordinality k(attnum, ord)
                    join pg_attribute a on a.attrelid = p.partrelid and a.attnum = k.attnum
              where p.partrelid = c.oid) as keys,
            (select format_type(a.atttypid, a.atttypmod) from pg_partitioned_table p
                    join pg_attribute a on a.attrelid = p.partrelid and a.attnum = p.partattrs[0]
              where p.partrelid = c.oid) as keytype
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1 and c.relname = $2`,
    [schema, table],
  )
  const found = root.rows[0]
  if (!found || found.kind !== 'p') return undefined
  const tree = await client.query<{
    oid: number
    schema: string
    table: string
    kind: string
    level: number
    bounds: string[]
    parent_schema: string
    parent_table: string
  }>(
    `with recursive tree as (
       select i.inhrelid as oid, 1 as level, array[pg_get_expr(c.relpartbound, c.oid)] as bounds, i.inhparent as parent
         from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = $1
       union all
       select i.inhrelid, t.level + 1, t.bounds || pg_get_expr(c.relpartbound, c.oid), i.inhparent
         from tree t join pg_inherits i on i.inhparent = t.oid join pg_class c on c.oid = i.inhrelid
     )
     select t.oid, n.nspname as schema, c.relname as table, c.relkind as kind, t.level, t.bounds,
            pn.nspname as parent_schema, p.relname as parent_table
       from tree t join pg_class c on c.oid = t.oid join pg_namespace n on n.oid = c.relnamespace
       join pg_class p on p.oid = t.parent join pg_namespace pn on pn.oid = p.relnamespace
      where c.relkind <> 'p'
      order by t.bounds::text, n.nspname, c.relname`,
    [found.oid],
  )
  const keydef = found.keydef ?? ''
  return {
    keyDefinition: keydef,
    strategy: keydef.split(' ')[0]?.toLowerCase() as PartitionTree['strategy'],
    keyColumns: found.keys ?? [],
    keyType: found.keytype ?? undefined,
    leaves: tree.rows.map((row) => ({
      schema: row.schema,
      table: row.table,
      oid: row.oid,
      level: row.level,
      path: row.bounds.map(parsePartitionBound),
      parent: { schema: row.parent_schema, table: row.parent_table },
    })),
  }
}
