import { connect } from 'node:net'
import type pg from 'pg'
import { destroyClient } from '../pg/client-control.js'

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

export interface AbortWatch {
  /** Set when the client's socket was destroyed: the client must be released with it, so the pool discards it. */
  readonly destroyed: Error | undefined
  /** Sends no more cancels (before COMMIT, which must not be cut, and once the transaction failed anyway). */
  stop(): void
  /** Stops everything, the deadline included: the load is over. */
  close(): void
}

/**
 * Makes an abort end whatever a client waits on in the warehouse: a lock (another session's ACCESS EXCLUSIVE on
 * the table), an advisory lock, a long statement, a server or network that stopped answering.
 *
 * Closing the socket alone is not enough: a backend waiting on a lock does not notice, it keeps waiting with its
 * transaction open, and its queued lock request holds back every later reader of the table. So the running
 * statement is cancelled: the transaction fails and the caller rolls it back. The cancel is sent again every
 * `repeatMs` (one sent while the client was between statements is ignored by the server), and when the load has
 * not ended `destroyAfterMs` after the abort (a stalled server or network), the socket is destroyed.
 */
export function cancelOnAbort(client: pg.ClientBase, signal: AbortSignal, options: { repeatMs?: number; destroyAfterMs?: number } = {}): AbortWatch {
  const { repeatMs = 200, destroyAfterMs = 1000 } = options
  let destroyed: Error | undefined
  let repeat: NodeJS.Timeout | undefined
  let deadline: NodeJS.Timeout | undefined
  const onAbort = () => {
    sendCancelRequest(client, destroyAfterMs)
    repeat = setInterval(() => sendCancelRequest(client, destroyAfterMs), repeatMs)
    deadline = setTimeout(() => {
      clearInterval(repeat)
      destroyed = new Error(`pg-datakit: the warehouse did not end the run's statement within ${destroyAfterMs} ms of an abort`)
      destroyClient(client)
    }, destroyAfterMs)
  }
  if (signal.aborted) onAbort()
  else signal.addEventListener('abort', onAbort, { once: true })
  const stop = () => {
    signal.removeEventListener('abort', onAbort)
    clearInterval(repeat)
  }
  return {
    get destroyed() {
      return destroyed
    },
    stop,
    close() {
      stop()
      clearTimeout(deadline)
    },
  }
}
