import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { ConfigError } from '../errors.js'
import { copyIn } from '../pg/copy-in.js'
import { copyOutOn } from '../pg/copy-out.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { literal } from '../pg/inline-parameters.js'
import { bronzeTableName, ensureBronzeTable, type BronzeRelation } from './bronze-table.js'
import { readCaptureState, storeDurableLsn } from './change-log.js'
import { checkCdcReady, dropSlot, slotStatus } from './slots.js'

export interface InitialSnapshotOptions {
  readonly slot: string
  readonly publication: string
  readonly schema: string
  readonly signal?: AbortSignal
}

export interface InitialSnapshotReport {
  /** Tables copied into `<schema>.br_<table>`, with their row counts. */
  readonly tables: readonly { readonly schema: string; readonly table: string; readonly rows: number }[]
  /** The slot's consistent point: streaming continues from here, with no gap and no overlap. */
  readonly consistentPoint: string
}

/**
 * The initial snapshot hand-off: creates the slot over the replication protocol with an exported snapshot
 * (`CREATE_REPLICATION_SLOT ... LOGICAL pgoutput EXPORT_SNAPSHOT`), copies every published table as of that snapshot
 * into `<schema>.br_<table>`, and stores the slot's consistent point as the captured position, all in one warehouse
 * transaction. The slot then streams exactly the transactions that commit after the snapshot: no gap, no overlap
 * (https://www.postgresql.org/docs/current/logicaldecoding-explanation.html#LOGICALDECODING-EXPLANATION-EXPORTED-SNAP).
 *
 * Restartable: the attempt is recorded (`initial_snapshot = 'pending'`) before the slot is made, so a run that dies
 * mid-copy leaves no bronze rows and its slot is dropped and made again by the next run. Does nothing when the
 * warehouse already holds a position for the slot.
 */
export async function takeInitialSnapshot(
  source: Connection,
  writer: pg.ClientBase,
  options: InitialSnapshotOptions,
): Promise<InitialSnapshotReport | undefined> {
  const { slot, publication, schema } = options
  const state = await readCaptureState(writer, schema, slot)
  if (state && state.initialSnapshot !== 'pending') return undefined
  // Before a slot is made: a missing publication would otherwise snapshot nothing and call it done.
  await checkCdcReady(source, { publication, slot })
  const existing = await slotStatus(source, slot)
  if (existing && !state) {
    throw new ConfigError(
      'slot',
      `slot "${slot}" exists but the warehouse holds no position for it, so an initial snapshot cannot line up with it; drop the slot (dropSlot) to start from a snapshot, or capture without initialSnapshot`,
    )
  }
  if (!state) await storeDurableLsn(writer, schema, slot, '0/0', 'pending')
  // Made by an earlier attempt that did not finish: nothing of it reached the warehouse.
  if (existing) await dropSlot(source, slot)

  const replication = await source.replicationClient()
  const reader = await source.acquire(options.signal)
  let readerBroken: Error | undefined
  try {
    const created = await replication.query<{ consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput EXPORT_SNAPSHOT`,
    )
    const { consistent_point: consistentPoint, snapshot_name: snapshot } = created.rows[0] as { consistent_point: string; snapshot_name: string }
    await reader.query('begin isolation level repeatable read read only')
    await reader.query(`set transaction snapshot ${literal(snapshot)}`)
    // The snapshot is imported: the replication connection that exported it may go.
    await replication.end()
    const relations = await publishedRelations(reader, publication)
    const tables: { schema: string; table: string; rows: number }[] = []
    await writer.query('begin')
    try {
      for (const { relation, filter } of relations) {
        const target = bronzeTableName(schema, relation)
        await ensureBronzeTable(writer, target, relation)
        await writer.query(`truncate ${target}`)
        const columns = relation.columns.map((column) => quoteIdent(column.name)).join(', ')
        const select = `select ${columns} from ${qualifiedName(relation.schema, relation.table)}${filter ? ` where ${filter}` : ''}`
        const context = { schema: relation.schema, table: relation.table }
        const rows = await copyIn(writer, `copy ${target} (${columns}) from stdin`, copyOutOn(reader, `copy (${select}) to stdout`, context, options.signal), options.signal)
        tables.push({ schema: relation.schema, table: relation.table, rows })
      }
      await storeDurableLsn(writer, schema, slot, consistentPoint, 'done')
      await writer.query('commit')
    } catch (error) {
      await writer.query('rollback').catch(() => undefined)
      throw error
    }
    await reader.query('commit')
    return { tables, consistentPoint }
  } catch (error) {
    readerBroken = error as Error
    throw error
  } finally {
    await replication.end().catch(() => undefined)
    reader.release(readerBroken)
  }
}

/**
 * The published tables as pgoutput sends them: columns (the publication's column list, generated columns left out)
 * and the key flags of the replica identity; with the publication's row filter (PostgreSQL 15), which comes from the
 * catalog as SQL.
 */
async function publishedRelations(client: pg.ClientBase, publication: string): Promise<{ relation: BronzeRelation; filter: string | null }[]> {
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
  return rows.map((row) => ({
    relation: { schema: row.schema, table: row.table, columns: JSON.parse(row.columns) as BronzeRelation['columns'], replicaIdentity: row.identity, primaryKey: row.primary_key },
    filter: row.filter,
  }))
}
