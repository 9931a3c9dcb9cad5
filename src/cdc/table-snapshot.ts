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
}

/**
 * The published tables as pgoutput sends them: columns (the publication's column list, generated columns left out)
 * and the key flags of the replica identity; with the publication's row filter, which comes from the catalog as SQL.
 * `only` keeps those tables (`schema.table` as `tableKey` makes it).
 */
export async function publishedTables(client: pg.ClientBase, publication: string, only?: ReadonlySet<string>): Promise<PublishedTable[]> {
  // jsonb arrives as its text (the lossless type map), and is parsed here.
  const { rows } = await client.query<{ schema: string; table: string; identity: string; filter: string | null; columns: string; primary_key: string[] }>(
    `select t.schemaname as schema, t.tablename as table, c.relreplident as identity, to_jsonb(t)->>'rowfilter' as filter,
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
      relation: { schema: row.schema, table: row.table, columns: JSON.parse(row.columns) as BronzeRelation['columns'], replicaIdentity: row.identity, primaryKey: row.primary_key },
      filter: row.filter,
    }))
}

/** The names of the tables a publication publishes, as `tableKey`s. */
export async function publishedTableKeys(client: pg.ClientBase, publication: string): Promise<Set<string>> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    'select schemaname as schema, tablename as table from pg_publication_tables where pubname = $1',
    [publication],
  )
  return new Set(rows.map(tableKey))
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
