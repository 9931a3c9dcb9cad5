import type pg from 'pg'

/** How much a run will read, as far as the catalog knows: what progress events turn into a percent and an ETA. */
export interface SizeEstimate {
  /** Rows, from the planner's statistics; undefined when the catalog cannot say (a table never analyzed). */
  readonly rows: number | undefined
  /** The relations' size on disk (heap and TOAST), for scale: the COPY bytes a run moves are a different measure. */
  readonly bytes: number | undefined
}

export const UNKNOWN_SIZE: SizeEstimate = Object.freeze({ rows: undefined, bytes: undefined })

/**
 * Estimates the rows and bytes of some relations (a table, or the leaves of a partitioned one, which the function
 * walks itself), the way the planner does: `pg_class.reltuples` per page, times the pages the relation has now
 * (https://www.postgresql.org/docs/current/row-estimation-examples.html), so a table that grew since its last ANALYZE
 * is not under-counted. `reltuples = -1` (never vacuumed or analyzed, PostgreSQL 14+) gives no row count rather than
 * a wrong one, and so does a table analyzed while empty that has pages now.
 */
export async function estimateRelations(client: pg.ClientBase, relations: readonly { schema: string; table: string }[]): Promise<SizeEstimate> {
  if (relations.length === 0) return Object.freeze({ rows: 0, bytes: 0 })
  // A relation not found (dropped since the run was planned) leaves the estimate unknown rather than smaller.
  const { rows } = await client.query<{ relkind: string; reltuples: number; relpages: number; pages: number; bytes: string }>(
    `with named as (
       select c.oid, c.relkind from unnest($1::text[], $2::text[]) as t(schema_name, table_name)
         join pg_namespace n on n.nspname = t.schema_name
         join pg_class c on c.relnamespace = n.oid and c.relname = t.table_name),
     leaves as (
       select oid from named where relkind <> 'p'
       union all
       select p.relid from named, pg_partition_tree(named.oid) p where named.relkind = 'p' and p.isleaf)
     select c.relkind, c.reltuples::float8 as reltuples, c.relpages::int as relpages,
            (pg_relation_size(c.oid) / current_setting('block_size')::int)::int as pages, pg_table_size(c.oid)::text as bytes
       from leaves join pg_class c on c.oid = leaves.oid`,
    [relations.map((relation) => relation.schema), relations.map((relation) => relation.table)],
  )
  let total: number | undefined = rows.length >= relations.length ? 0 : undefined
  let bytes = 0
  for (const row of rows) {
    bytes += Number(row.bytes)
    if (total === undefined) continue
    // Views and foreign tables have no statistics of their own.
    if (row.relkind !== 'r' && row.relkind !== 'm') total = undefined
    else if (row.reltuples < 0) total = undefined
    else if (row.relpages > 0) total += Math.round((row.reltuples / row.relpages) * row.pages)
    else if (row.pages > 0) total = undefined
    else total += row.reltuples
  }
  return Object.freeze({ rows: total, bytes })
}
