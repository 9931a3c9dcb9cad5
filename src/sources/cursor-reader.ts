import Cursor from 'pg-cursor'
import type { Connection } from '../connection/connection.js'
import type { Batch, Row, RunContext } from '../contracts.js'
import { AbortedError, classifyError, SourceQueryError, type ErrorContext } from '../errors.js'
import { destroyClient } from '../pg/client-control.js'
import { typeParsersFor } from '../pg/type-parsers.js'
import type { Column } from '../pg/types.js'

export interface CursorRead {
  readonly sql: string
  readonly parameters: readonly unknown[]
  readonly columns: readonly Column[]
  readonly batchSize: number
  readonly context: ErrorContext
}

/**
 * Reads a query through a server-side cursor (a portal fetched `batchSize` rows at a time, pg-cursor),
 * so memory holds one batch whatever the table's size. The client is released when the loop ends,
 * breaks or throws; an abort destroys it mid-read.
 */
export async function* readWithCursor<R = Row>(
  connection: Connection,
  read: CursorRead,
  ctx: Partial<RunContext> = {},
): AsyncGenerator<Batch<R>> {
  const { signal } = ctx
  const client = await connection.acquire(signal)
  let broken: unknown
  const onAbort = () => {
    broken = new AbortedError('extraction aborted', { step: 'source', context: read.context })
    destroyClient(client)
  }
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    if (signal?.aborted) onAbort()
    if (broken) throw broken
    const cursor = client.query(
      new Cursor<R>(read.sql, [...read.parameters], { types: typeParsersFor(read.columns) } as Cursor.CursorQueryConfig),
    )
    try {
      for (;;) {
        const rows = await cursor.read(read.batchSize)
        if (rows.length > 0) yield { rows }
        if (rows.length < read.batchSize) break
      }
    } catch (error) {
      broken ??= error
      throw broken instanceof AbortedError ? broken : classifyError(error, 'source', read.context, SourceQueryError)
    } finally {
      if (!broken) {
        try {
          await cursor.close()
        } catch (error) {
          broken = error
        }
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    client.release(broken ? (broken instanceof Error ? broken : new Error(String(broken))) : undefined)
  }
}
