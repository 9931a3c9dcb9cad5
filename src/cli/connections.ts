import { connect, type Connection } from '../connection/connection.js'
import { connectSource, connectWarehouse } from '../connection/env.js'

/**
 * The source database: `--from`, else `SOURCE_DATABASE_URL` (as `connectSource()` reads it). A URL on the command line
 * is visible to other users of the machine (`ps`): the environment variable is the better place for a password.
 */
export function sourceConnection(url: string | undefined): Connection {
  return url === undefined ? connectSource({ applicationName: 'pg-datakit cli' }) : connect({ url, applicationName: 'pg-datakit cli' }, '--from')
}

/** The warehouse database: `--to`, else `WAREHOUSE_DATABASE_URL`. */
export function warehouseConnection(url: string | undefined): Connection {
  return url === undefined ? connectWarehouse({ applicationName: 'pg-datakit cli' }) : connect({ url, applicationName: 'pg-datakit cli' }, '--to')
}

/** Runs `use` with connections it closes afterwards, whatever happened (also when opening the second one fails). */
export async function withConnections<T>(open: (() => Connection)[], use: (connections: Connection[]) => Promise<T>): Promise<T> {
  const connections: Connection[] = []
  try {
    for (const make of open) connections.push(make())
    return await use(connections)
  } finally {
    for (const connection of connections) await connection.close().catch(() => undefined)
  }
}
