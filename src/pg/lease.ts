import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { AbortedError, type ErrorContext } from '../errors.js'
import { sendCancelRequest } from './cancel-request.js'
import { destroyClient } from './client-control.js'

/**
 * A pooled client held for one read, the only way sources hold one. The client goes back to the pool only when its
 * holder said it is idle again (`idle()`, after the last COMMIT or a finished statement): a client given back with
 * a transaction, a cursor portal or a COPY still open would hang the next query on the pool, so on every other exit
 * (a break, an error, an abort) it is destroyed instead. An abort destroys it at once, which ends any wait on it.
 */
export interface Lease extends AsyncDisposable {
  readonly client: pg.PoolClient
  /** The AbortedError when the run was aborted while the lease was held. */
  readonly aborted: AbortedError | undefined
  /** The client is idle (no transaction, portal or COPY open): `release()` may give it back to the pool. */
  idle(): void
  /** The client is busy again (e.g. `begin`). */
  busy(): void
  /** Gives the client back (idle) or destroys it (anything else). Safe to call more than once. */
  release(): void
}

export async function takeLease(connection: Connection, signal: AbortSignal | undefined, context: ErrorContext): Promise<Lease> {
  const client = await connection.acquire(signal)
  let idle = true
  let released = false
  let aborted: AbortedError | undefined
  const onAbort = () => {
    aborted = new AbortedError('extraction aborted', { step: 'source', context })
    idle = false
    // A backend waiting on a lock does not notice its socket closing: it would stay queued (holding back later
    // readers of the table) with its transaction open. Cancel what it runs, then close.
    sendCancelRequest(client, 1_000)
    destroyClient(client)
  }
  if (signal?.aborted) onAbort()
  else signal?.addEventListener('abort', onAbort, { once: true })
  const release = () => {
    if (released) return
    released = true
    signal?.removeEventListener('abort', onAbort)
    if (idle) {
      client.release()
    } else {
      destroyClient(client)
      client.release(new Error('pg-datakit: client left with a transaction, portal or COPY open'))
    }
  }
  return {
    client,
    get aborted() {
      return aborted
    },
    idle: () => {
      if (!aborted) idle = true
    },
    busy: () => {
      idle = false
    },
    release,
    [Symbol.asyncDispose]: async () => release(),
  }
}
