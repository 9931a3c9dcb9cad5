import type pg from 'pg'
import { copyIn } from '../pg/copy-in.js'
import { copyOutOn } from '../pg/copy-out.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { literal } from '../pg/inline-parameters.js'
import {
  bronzeColumns,
  bronzeTableName,
  CDC_SNAPSHOT_EXTRACTION_TYPE,
  LINEAGE_COLUMNS,
  prepareBronzeTable,
  type BronzeRelation,
  type Lineage,
} from './bronze-table.js'

/** A published table as pgoutput sends it, with the publication's row filter (PostgreSQL 15) as SQL. */
export interface PublishedTable {
  readonly relation: BronzeRelation
  readonly filter: string | null
  readonly oid: number
  /**
   * What bronze's copy of the table depends on, as one string: the table's OID (a table dropped and made again under
   * its name is another), the row filter, and each published column's number, name and type (a column dropped and
   * added again, a column list or filter changed). When it changes, rows no change will carry may differ.
   */
  readonly signature: string
}

/**
 * The published tables as pgoutput sends them: columns (the publication's column list, generated columns left out)
 * and the key flags of the replica identity; with the publication's row filter, which comes from the catalog as SQL.
 * `only` keeps those tables (`schema.table` as `tableKey` makes it).
 */
export async function publishedTables(client: pg.ClientBase, publication: string, only?: ReadonlySet<string>): Promise<PublishedTable[]> {
  // jsonb arrives as its text (the lossless type map), and is parsed here.
  const { rows } = await client.query<{
    schema: string
    table: string
    oid: number
    signature: string
    identity: string
    filter: string | null
    columns: string
    primary_key: string[]
  }>(
    `select t.schemaname as schema, t.tablename as table, c.oid::int as oid, ${SIGNATURE} as signature,
            c.relreplident as identity, to_jsonb(t)->>'rowfilter' as filter,
            (select jsonb_agg(jsonb_build_object('name', a.attname, 'typeOid', a.atttypid::int, 'typeModifier', a.atttypmod,
                     'isKey', case c.relreplident when 'f' then true
                                  when 'i' then a.attnum = any(coalesce((select i.indkey::int2[] from pg_index i where i.indrelid = c.oid and i.indisreplident), '{}'))
                                  else a.attnum = any(coalesce((select i.indkey::int2[] from pg_index i where i.indrelid = c.oid and i.indisprimary), '{}')) end)
                     order by a.attnum)
               from pg_attribute a
              where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
                and (to_jsonb(t)->'attnames' is null or to_jsonb(t)->'attnames' ? a.attname::text)) as columns,
            array(select a.attname::text from pg_index i cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
                    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                   where i.indrelid = c.oid and i.indisprimary order by k.ord) as primary_key
       from pg_publication_tables t
       join pg_namespace n on n.nspname = t.schemaname
       join pg_class c on c.relnamespace = n.oid and c.relname = t.tablename
      where t.pubname = $1
      order by 1, 2`,
    [publication],
  )
  return rows
    .filter((row) => !only || only.has(tableKey(row)))
    .map((row) => ({
      relation: {
        schema: row.schema,
        table: row.table,
        columns: JSON.parse(row.columns) as BronzeRelation['columns'],
        replicaIdentity: row.identity,
        primaryKey: row.primary_key,
      },
      filter: row.filter,
      oid: row.oid,
      signature: row.signature,
    }))
}

/**
 * `PublishedTable.signature` in SQL, over `pg_publication_tables t` joined to the table's `pg_class c`: md5 of the OID,
 * the row filter and the published columns (the column list when there is one, else every column but generated ones).
 */
const SIGNATURE = `md5(concat_ws('|', c.oid::text, to_jsonb(t)->>'rowfilter',
    (select string_agg(concat_ws(':', a.attnum, a.attname, a.atttypid, a.atttypmod), ',' order by a.attnum)
       from pg_attribute a
      where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
        and (to_jsonb(t)->'attnames' is null or to_jsonb(t)->'attnames' ? a.attname::text))))`

/** The tables a publication publishes, as `tableKey`s, with their `PublishedTable.signature`. */
export async function publishedTableKeys(client: pg.ClientBase, publication: string): Promise<Map<string, string>> {
  const { rows } = await client.query<{ schema: string; table: string; signature: string }>(
    `select t.schemaname as schema, t.tablename as table, ${SIGNATURE} as signature
       from pg_publication_tables t
       join pg_namespace n on n.nspname = t.schemaname
       join pg_class c on c.relnamespace = n.oid and c.relname = t.tablename
      where t.pubname = $1`,
    [publication],
  )
  return new Map(rows.map((row) => [tableKey(row), row.signature]))
}

/**
 * Locks the tables against rewrites for the rest of `reader`'s transaction (ACCESS SHARE, the lock a SELECT takes), then
 * names those rewritten since its snapshot was taken (TRUNCATE, ALTER COLUMN TYPE, VACUUM FULL, CLUSTER, ADD COLUMN
 * with a volatile default): a rewrite writes a new file whose rows an older snapshot cannot see, so a copy under it
 * would be empty or short, without an error. The snapshot's `pg_class` row (read through the snapshot) is compared
 * with the relation's current file (`pg_relation_filenode`, read from the catalog as it is now), for each partition.
 */
export async function rewrittenSinceSnapshot(reader: pg.ClientBase, tables: readonly PublishedTable[]): Promise<string[]> {
  for (const table of tables) await reader.query(`lock table ${qualifiedName(table.relation.schema, table.relation.table)} in access share mode`)
  const { rows } = await reader.query<{ name: string }>(
    `select format('%I.%I', n.nspname, c.relname) as name
       from unnest($1::oid[]) as t(oid)
       cross join lateral (select relid from pg_partition_tree(t.oid) where isleaf union select t.oid) as r(relid)
       join pg_class c on c.oid = r.relid
       join pg_namespace n on n.oid = c.relnamespace
      where c.relkind <> 'p' and c.relfilenode is distinct from pg_relation_filenode(c.oid)`,
    [tables.map((table) => table.oid)],
  )
  return rows.map((row) => row.name)
}

/** One string per table, unambiguous whatever the names hold. */
export function tableKey(table: { readonly schema: string; readonly table: string }): string {
  return JSON.stringify([table.schema, table.table])
}

/** The lineage of a snapshot's rows: the source's label and the position the snapshot stands for. */
export interface SnapshotLineage extends Lineage {
  /** `_bronze_lsn` of every row copied: the snapshot's consistent point (or the WAL position it was read at). */
  readonly lsn: string
}

/**
 * Replaces `<schema>.br_<table>` with the published table's rows as `reader`'s snapshot sees them, inside `writer`'s
 * transaction: the bronze table is made ready as a capture makes it (`prepareBronzeTable`), emptied, and filled by
 * COPY. Every row gets the lineage columns: `_bronze_loaded_at` the writer's transaction time, `_bronze_extraction_type`
 * `'cdc_snapshot'`, `_bronze_lsn` the snapshot's position. Returns the rows copied.
 */
export async function copyPublishedTable(
  reader: pg.ClientBase,
  writer: pg.ClientBase,
  schema: string,
  { relation, filter }: PublishedTable,
  lineage: SnapshotLineage,
  signal?: AbortSignal,
): Promise<number> {
  const target = bronzeTableName(schema, relation)
  await prepareBronzeTable(writer, schema, relation, await bronzeColumns(reader, relation))
  await writer.query(`truncate ${target}`)
  // The warehouse transaction's time, as text in the writer's own session: COPY reads it back to the same instant.
  const loadedAt = (await writer.query<{ now: string }>('select now()::text as now')).rows[0]?.now as string
  // The lineage values are constants of the copy: the source sends them on every line, as text the COPY into the
  // bronze table reads in its columns' types.
  const constants = [loadedAt, lineage.source, relation.schema, relation.table, CDC_SNAPSHOT_EXTRACTION_TYPE, lineage.lsn].map((value) => literal(value))
  const columns = relation.columns.map((column) => quoteIdent(column.name))
  const select = `select ${[...columns, ...constants].join(', ')} from ${qualifiedName(relation.schema, relation.table)}${filter ? ` where ${filter}` : ''}`
  const written = [...columns, ...LINEAGE_COLUMNS.map((column) => quoteIdent(column.name))].join(', ')
  const context = { schema: relation.schema, table: relation.table }
  return copyIn(writer, `copy ${target} (${written}) from stdin`, copyOutOn(reader, `copy (${select}) to stdout`, context, signal), signal)
}
