import type pg from 'pg'
import type { Connection } from '../connection/connection.js'

/**
 * Names the database a client is connected to independently of how its URL was written (`localhost` or
 * `127.0.0.1`, a DNS alias, a pooler): the cluster's system identifier (shared by its physical standbys) and the
 * database name. Checkpoints are keyed by it.
 */
export async function databaseIdentity(client: pg.ClientBase): Promise<string> {
  const { rows } = await client.query<{ id: string; db: string }>('select system_identifier::text as id, current_database() as db from pg_control_system()')
  const row = rows[0] as { id: string; db: string }
  return `postgresql-system:${row.id}/${row.db}`
}

const identities = new WeakMap<Connection, Promise<string>>()

/** The identity of the database a connection reaches, asked once per connection. */
export function connectionIdentity(connection: Connection): Promise<string> {
  let identity = identities.get(connection)
  if (!identity) {
    identity = connection.withClient(databaseIdentity)
    identity.catch(() => identities.delete(connection))
    identities.set(connection, identity)
  }
  return identity
}
