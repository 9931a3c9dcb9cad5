import { connect } from 'node:net'
import type pg from 'pg'

/** What a connected pg client knows of its backend (set from BackendKeyData) and of where it connected. */
interface BackendKey {
  readonly processID: number | null
  readonly secretKey: number | null
  readonly host?: string
  readonly port?: number
}

/** CancelRequest's request code: 1234 in the high 16 bits, 5678 in the low. */
const CANCEL_REQUEST_CODE = 80877102

/**
 * Asks the server to cancel the statement a client's backend is running, as libpq's PQcancel (psql's Ctrl-C) does:
 * a new connection carrying only a CancelRequest (length, code, the backend's process ID and secret key), without
 * authentication or TLS, and no answer. A backend that is idle ignores it.
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS
 */
export function sendCancelRequest(client: pg.ClientBase, timeoutMs: number): void {
  const { processID, secretKey, host, port } = client as unknown as BackendKey
  if (processID == null || secretKey == null || !port) return
  const packet = Buffer.alloc(16)
  packet.writeInt32BE(16, 0)
  packet.writeInt32BE(CANCEL_REQUEST_CODE, 4)
  packet.writeInt32BE(processID, 8)
  packet.writeInt32BE(secretKey, 12)
  // A host starting with / is a Unix socket directory, as in libpq.
  const socket = host?.startsWith('/') ? connect(`${host}/.s.PGSQL.${port}`) : connect(port, host || 'localhost')
  socket.setTimeout(timeoutMs, () => socket.destroy())
  socket.on('error', () => undefined)
  socket.once('connect', () => socket.end(packet))
}
