import type pg from 'pg'
import { sendCancelRequest } from '../pg/cancel-request.js'
import { destroyClient } from '../pg/client-control.js'

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
