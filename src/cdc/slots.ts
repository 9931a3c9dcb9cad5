import type { Connection } from '../connection/connection.js'
import { ConfigError, MissingPublicationError, ReplicaIdentityError, SlotInvalidatedError, WalLevelError } from '../errors.js'
import { checkIdentifier, qualifiedName, quoteIdent } from '../pg/identifiers.js'

/** What the source says about a replication slot. */
export interface SlotStatus {
  readonly name: string
  readonly plugin: string
  /** The database the slot decodes. */
  readonly database: string | null
  readonly active: boolean
  readonly confirmedFlushLsn: string | null
  readonly restartLsn: string | null
  /** `reserved`, `extended`, `unreserved` or `lost` (https://www.postgresql.org/docs/current/view-pg-replication-slots.html). */
  readonly walStatus: string | null
  /** Bytes of WAL between the slot's confirmed position and the server's current one: how far behind the consumer is. */
  readonly lagBytes: number
  /** Bytes of WAL the server keeps for this slot (from its restart position). */
  readonly retainedBytes: number
}

function checkName(name: string, field: string): string {
  checkIdentifier(name, field)
  if (!/^[a-z0-9_]+$/.test(name)) throw new ConfigError(field, `"${name}" may hold only lower-case letters, digits and "_" (PostgreSQL's rule for slot names)`)
  return name
}

/** Creates the publication if it is missing: for all tables, or for the given ones. An existing one is left as it is. */
export async function ensurePublication(
  connection: Connection,
  name: string,
  tables: 'all' | readonly { readonly schema?: string; readonly table: string }[] = 'all',
): Promise<{ created: boolean }> {
  checkIdentifier(name, 'publication')
  const existing = await connection.query('select 1 from pg_publication where pubname = $1', [name])
  if (existing.rowCount) return { created: false }
  const target = tables === 'all' ? 'for all tables' : `for table ${tables.map((table) => qualifiedName(table.schema ?? 'public', table.table)).join(', ')}`
  await connection.query(`create publication ${quoteIdent(name)} ${target}`)
  return { created: true }
}

/**
 * Creates a pgoutput logical replication slot if it is missing. `consistentPoint` is where a slot made now starts:
 * it streams the transactions that commit after it.
 */
export async function ensureSlot(connection: Connection, name: string): Promise<{ created: boolean; consistentPoint?: string }> {
  checkName(name, 'slot')
  const existing = await connection.query<{ plugin: string }>('select plugin from pg_replication_slots where slot_name = $1', [name])
  if (existing.rows[0]) {
    if (existing.rows[0].plugin !== 'pgoutput') {
      throw new ConfigError('slot', `slot "${name}" uses the ${existing.rows[0].plugin} plugin; pg-datakit reads pgoutput`)
    }
    return { created: false }
  }
  const { rows } = await connection.query<{ lsn: string }>(`select lsn::text from pg_create_logical_replication_slot($1, 'pgoutput')`, [name])
  return { created: true, consistentPoint: rows[0]?.lsn as string }
}

/** Drops a slot (the server then frees the WAL it kept). Missing is fine. */
export async function dropSlot(connection: Connection, name: string): Promise<void> {
  checkName(name, 'slot')
  await connection.query('select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1', [name])
}

export async function slotStatus(connection: Connection, name: string): Promise<SlotStatus | undefined> {
  const { rows } = await connection.query<{
    name: string
    plugin: string
    database: string | null
    active: boolean
    confirmed: string | null
    restart: string | null
    wal_status: string | null
    lag: string | null
    retained: string | null
  }>(
    `select slot_name as name, plugin, database, active, confirmed_flush_lsn::text as confirmed, restart_lsn::text as restart, wal_status,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text as lag,
            pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text as retained
       from pg_replication_slots where slot_name = $1`,
    [name],
  )
  const row = rows[0]
  if (!row) return undefined
  return {
    name: row.name,
    plugin: row.plugin,
    database: row.database,
    active: row.active,
    confirmedFlushLsn: row.confirmed,
    restartLsn: row.restart,
    walStatus: row.wal_status,
    lagBytes: Number(row.lag ?? 0),
    retainedBytes: Number(row.retained ?? 0),
  }
}

/**
 * Checks, before anything streams, what change data capture needs and names what is wrong: `wal_level = logical`, the
 * publication, a key for every published table's updates and deletes, and (when it exists) a slot that was not
 * invalidated.
 */
export async function checkCdcReady(connection: Connection, options: { publication: string; slot?: string }): Promise<void> {
  const level = (await connection.query<{ level: string }>(`select current_setting('wal_level') as level`)).rows[0]?.level
  if (level !== 'logical') {
    throw new WalLevelError(
      `the source runs with wal_level = ${level}; change data capture needs wal_level = logical (set it in postgresql.conf and restart the server)`,
      { step: 'source' },
    )
  }
  const publication = await connection.query('select 1 from pg_publication where pubname = $1', [options.publication])
  if (!publication.rowCount) {
    throw new MissingPublicationError(`publication "${options.publication}" does not exist in this database; create it (ensurePublication) or name another`, {
      step: 'source',
      context: { publication: options.publication },
    })
  }
  const keyless = await connection.query<{ name: string; identity: string }>(
    `select format('%I.%I', t.schemaname, t.tablename) as name, c.relreplident as identity
       from pg_publication_tables t
       join pg_namespace n on n.nspname = t.schemaname join pg_class c on c.relnamespace = n.oid and c.relname = t.tablename
      where t.pubname = $1
        and (c.relreplident = 'n' or (c.relreplident = 'd' and not exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary)))
      order by 1`,
    [options.publication],
  )
  if (keyless.rowCount) {
    throw new ReplicaIdentityError(
      `updates and deletes of ${keyless.rows.map((row) => row.name).join(', ')} carry no key (REPLICA IDENTITY ${keyless.rows[0]?.identity === 'n' ? 'NOTHING' : 'DEFAULT without a primary key'}); add a primary key or ALTER TABLE ... REPLICA IDENTITY FULL`,
      { step: 'source', context: { publication: options.publication } },
    )
  }
  if (options.slot) {
    const status = await slotStatus(connection, options.slot)
    if (status?.walStatus === 'lost') {
      throw new SlotInvalidatedError(
        `replication slot "${options.slot}" was invalidated (wal_status = lost): the WAL it needed was removed, so changes were lost. Drop the slot and start again from a fresh snapshot`,
        { step: 'source', context: { slot: options.slot } },
      )
    }
  }
}
