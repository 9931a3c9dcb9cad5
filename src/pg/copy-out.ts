import type pg from 'pg'
import { CopyOutReader } from './copy-out-reader.js'
import type { Connection } from '../connection/connection.js'
import type { RunContext } from '../contracts.js'
import { AbortedError, classifyError, SourceQueryError, type ErrorContext } from '../errors.js'
import { takeLease } from './lease.js'

/**
 * `COPY ... TO STDOUT` on a client the caller holds (inside its transaction). The caller must destroy the client if
 * this generator does not finish: a COPY not read to its end leaves the connection mid-protocol.
 */
export async function* copyOutOn(client: pg.ClientBase, statement: string, context: ErrorContext, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const stream = client.query(new CopyOutReader(statement))
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) yield chunk
  } catch (error) {
    if (signal?.aborted) throw new AbortedError('extraction aborted', { step: 'source', context, cause: error })
    throw classifyError(error, 'source', context, SourceQueryError)
  }
}

/**
 * Runs `COPY ... TO STDOUT` and yields its rows' bytes as they arrive, whole rows per chunk (`CopyOutReader`).
 * Reading pauses when the consumer does, which pauses the socket.
 *
 * Leaving early (break, error, abort) destroys the client (the lease does): a COPY TO that is not read to its end
 * leaves the connection in the middle of the protocol, and it must never go back to the pool.
 */
export async function* copyOut(connection: Connection, statement: string, ctx: Partial<RunContext>, context: ErrorContext): AsyncGenerator<Buffer> {
  const lease = await takeLease(connection, ctx.signal, context)
  try {
    if (lease.aborted) throw lease.aborted
    lease.busy()
    yield* copyOutOn(lease.client, statement, context, ctx.signal)
    lease.idle()
  } finally {
    lease.release()
  }
}
