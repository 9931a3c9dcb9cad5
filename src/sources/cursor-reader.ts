import Cursor from 'pg-cursor'
import type { Connection } from '../connection/connection.js'
import type { Batch, Row, RunContext } from '../contracts.js'
import { AbortedError, classifyError, SourceQueryError, type ErrorContext } from '../errors.js'
import { destroyClient } from '../pg/client-control.js'
import { typeParsersFor } from '../pg/type-parsers.js'
import type { Column } from '../pg/types.js'
import { rowsWithinBudget } from '../pg/row-bytes.js'

export interface CursorRead {
  readonly sql: string
  readonly parameters: readonly unknown[]
  readonly columns: readonly Column[]
  readonly batchSize: number
  /** Reads shrink below `batchSize` when rows are large, to keep a batch near this many bytes. */
  readonly maxBatchBytes: number
  readonly context: ErrorContext
}

/**
 * Reads a query through a server-side cursor (a portal fetched `batchSize` rows at a time, pg-cursor),
 * so memory holds one batch whatever the table's size. When rows are large (big bytea, large objects), each
 * read asks for fewer rows, sized from the previous batch to stay near `maxBatchBytes`. The client is released when the loop ends,
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
      yield* cursorBatches(cursor, read.batchSize, read.maxBatchBytes)
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

/**
 * The batches of an open cursor. The first read takes one row, to learn how large rows are before asking for many;
 * each later read is sized from the previous batch to stay near `maxBatchBytes` (at most `batchSize` rows).
 */
export async function* cursorBatches<R>(cursor: Cursor<R>, batchSize: number, maxBatchBytes: number): AsyncGenerator<Batch<R>> {
  let rows = await cursor.read(1)
  let want = 1
  if (rows.length === 1 && batchSize > 1) {
    want = rowsWithinBudget(rows as Record<string, unknown>[], maxBatchBytes, batchSize)
    if (want > 1) rows = rows.concat(await cursor.read(want - 1))
  }
  for (;;) {
    if (rows.length > 0) yield { rows }
    if (rows.length < want) break
    want = rowsWithinBudget(rows as Record<string, unknown>[], maxBatchBytes, batchSize)
    rows = await cursor.read(want)
  }
}
