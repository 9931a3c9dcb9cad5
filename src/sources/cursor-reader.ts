import Cursor from 'pg-cursor'
import type { Connection } from '../connection/connection.js'
import type { Batch, Row, RunContext } from '../contracts.js'
import { classifyError, SourceQueryError, type ErrorContext } from '../errors.js'
import { cursorRows } from '../pg/cursor-rows.js'
import { takeLease } from '../pg/lease.js'
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
 * read asks for fewer rows, sized from the previous batch to stay near `maxBatchBytes`. The client is held through
 * a lease: given back when the cursor was read to its end and closed, destroyed on any other exit (a break, an
 * error, an abort), so no portal is ever left open on a pooled client.
 */
export async function* readWithCursor<R = Row>(connection: Connection, read: CursorRead, ctx: Partial<RunContext> = {}): AsyncGenerator<Batch<R>> {
  const lease = await takeLease(connection, ctx.signal, read.context)
  try {
    if (lease.aborted) throw lease.aborted
    lease.busy()
    const { config, row } = cursorRows(read.columns)
    const cursor = lease.client.query(new Cursor<unknown[]>(read.sql, [...read.parameters], config))
    yield* cursorBatches(cursor, read.batchSize, read.maxBatchBytes, row) as AsyncGenerator<Batch<R>>
    await cursor.close()
    lease.idle()
  } catch (error) {
    throw lease.aborted ?? classifyError(error, 'source', read.context, SourceQueryError)
  } finally {
    lease.release()
  }
}

/**
 * The batches of an open cursor. The first read takes one row, to learn how large rows are before asking for many;
 * each later read is sized from the previous batch to stay near `maxBatchBytes` (at most `batchSize` rows).
 */
export async function* cursorBatches(
  cursor: Cursor<unknown[]>,
  batchSize: number,
  maxBatchBytes: number,
  row: (values: readonly unknown[]) => Row,
): AsyncGenerator<Batch<Row>> {
  const read = async (count: number) => (await cursor.read(count)).map(row)
  let rows = await read(1)
  let want = 1
  if (rows.length === 1 && batchSize > 1) {
    want = rowsWithinBudget(rows, maxBatchBytes, batchSize)
    if (want > 1) rows = rows.concat(await read(want - 1))
  }
  for (;;) {
    if (rows.length < want) {
      if (rows.length > 0) yield { rows }
      break
    }
    // The next FETCH is sent before this batch is handed on: the server produces it while the pipeline works on this
    // one, instead of each waiting on the other (a profile of the cursor path had Node and the server taking turns).
    want = rowsWithinBudget(rows, maxBatchBytes, batchSize)
    const next = read(want)
    // Left early (break, error, abort), the lease destroys the client under the pending read: its failure is expected.
    next.catch(() => undefined)
    yield { rows }
    rows = await next
  }
}
