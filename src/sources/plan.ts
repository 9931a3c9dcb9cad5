import type pg from 'pg'
import { ConfigError } from '../errors.js'
import type { PartitionBound } from '../pg/partition-bound.js'
import type { PartitionTree } from '../pg/partitions.js'

/** Rows of the partition key to keep: `from <= key < to` (either side may be open). */
export interface KeyRange {
  readonly column: string
  readonly from?: string
  readonly to?: string
}

/** One unit of work: a relation, optionally a page range of it, optionally a key filter. */
export interface Piece {
  readonly id: number
  readonly schema: string
  readonly table: string
  /** Heap pages `[from, to)` of a plain table (`to` null: to the end, pages added later included). */
  readonly pages?: { readonly from: number; readonly to: number | null }
  /** For a partition that only partly lies in the requested range. */
  readonly filter?: KeyRange
  /** For partitions: `schema.table` of the leaf, recorded as `_bronze_partition`. */
  readonly partition?: string
}

/**
 * A plain, serializable description of a parallel extraction: JSON in, JSON out. Each piece can be read by any
 * connection that imported the run's snapshot; one day, by other processes or machines.
 */
export interface ExtractionPlan {
  readonly version: 1
  /** The source database, without password. */
  readonly source: string
  readonly schema: string
  readonly table: string
  readonly kind: 'table' | 'partitioned'
  readonly columns: readonly string[] | null
  /** Partitioned tables: the leaves the plan was made for; checked again under the run's snapshot. */
  readonly partitions: readonly { readonly schema: string; readonly table: string; readonly oid: number }[] | null
  readonly range: KeyRange | null
  readonly pieces: readonly Piece[]
}

/** Splits a plain table into `count` ranges of heap pages (ctid ranges); the last one is open-ended. */
export async function planPages(client: pg.ClientBase, schema: string, table: string, count: number): Promise<Piece[]> {
  const { rows } = await client.query<{ pages: string }>(
    `select (pg_relation_size(c.oid) / current_setting('block_size')::int)::text as pages
       from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2`,
    [schema, table],
  )
  const pages = Number(rows[0]?.pages ?? 0)
  const pieces = Math.max(1, Math.min(count, pages))
  const step = Math.ceil(pages / pieces) || 1
  return Array.from({ length: pieces }, (_, index) => ({
    id: index,
    schema,
    table,
    pages: { from: index * step, to: index === pieces - 1 ? null : (index + 1) * step },
  }))
}

/**
 * One piece per leaf partition that can hold rows of `range`. A partition wholly inside the range is read whole; one
 * that only partly intersects (and default and hash partitions, which may hold anything) gets the key filter.
 * Bounds are compared by the server, in the key's own type.
 */
export async function planPartitions(
  client: pg.ClientBase,
  tree: PartitionTree,
  range: { from?: string | undefined; to?: string | undefined } | undefined,
): Promise<{ pieces: Piece[]; range: KeyRange | null }> {
  const bounded = range && (range.from !== undefined || range.to !== undefined)
  if (bounded && (tree.keyColumns.length !== 1 || tree.keyType === undefined)) {
    throw new ConfigError('from', `a range filter needs a single-column partition key; this table is partitioned by ${tree.keyDefinition}`)
  }
  const key: KeyRange | null = bounded
    ? { column: tree.keyColumns[0] as string, ...(range.from !== undefined ? { from: range.from } : {}), ...(range.to !== undefined ? { to: range.to } : {}) }
    : null
  const verdicts = key ? await judge(client, tree, key) : tree.leaves.map(() => ({ intersects: true, contained: true }))
  const pieces: Piece[] = []
  tree.leaves.forEach((leaf, index) => {
    const verdict = verdicts[index] as { intersects: boolean; contained: boolean }
    if (!verdict.intersects) return
    pieces.push({
      id: pieces.length,
      schema: leaf.schema,
      table: leaf.table,
      partition: `${leaf.schema}.${leaf.table}`,
      ...(key && !verdict.contained ? { filter: key } : {}),
    })
  })
  return { pieces, range: key }
}

async function judge(client: pg.ClientBase, tree: PartitionTree, key: KeyRange): Promise<{ intersects: boolean; contained: boolean }[]> {
  const bounds = tree.leaves.map((leaf) => leaf.path[0] as PartitionBound)
  const kinds = bounds.map((bound) => bound.kind)
  const lows = bounds.map((bound) => (bound.kind === 'range' && typeof bound.from[0] === 'object' ? bound.from[0].value : null))
  const highs = bounds.map((bound) => (bound.kind === 'range' && typeof bound.to[0] === 'object' ? bound.to[0].value : null))
  const lists = bounds.map((bound) => (bound.kind === 'list' ? JSON.stringify(bound.values) : null))
  const T = tree.keyType as string // printed by the server from the catalog: a type name, not user input
  const { rows } = await client.query<{ intersects: boolean; contained: boolean }>(
    `select case b.kind
              when 'range' then (b.lo is null or $6::text is null or cast(b.lo as ${T}) < cast($6 as ${T}))
                            and (b.hi is null or $5::text is null or cast(b.hi as ${T}) > cast($5 as ${T}))
              when 'list' then exists (select 1 from jsonb_array_elements_text(b.list::jsonb) v(x)
                                        where x is not null and ($5::text is null or cast(x as ${T}) >= cast($5 as ${T}))
                                          and ($6::text is null or cast(x as ${T}) < cast($6 as ${T})))
              else true end as intersects,
            case b.kind
              when 'range' then ($5::text is null or (b.lo is not null and cast(b.lo as ${T}) >= cast($5 as ${T})))
                            and ($6::text is null or (b.hi is not null and cast(b.hi as ${T}) <= cast($6 as ${T})))
              when 'list' then not exists (select 1 from jsonb_array_elements_text(b.list::jsonb) v(x)
                                            where x is null or ($5::text is not null and cast(x as ${T}) < cast($5 as ${T}))
                                               or ($6::text is not null and cast(x as ${T}) >= cast($6 as ${T})))
              else false end as contained
       from unnest($1::text[], $2::text[], $3::text[], $4::text[]) with ordinality as b(kind, lo, hi, list, ord)
      order by b.ord`,
    [kinds, lows, highs, lists, key.from ?? null, key.to ?? null],
  )
  return rows
}
