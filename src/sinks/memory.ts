import type { Batch, RunContext, Shape, Sink, SinkResult } from '../contracts.js'
import { AbortedError } from '../errors.js'
import { safeRow } from '../pg/row-functions.js'

/**
 * A sink that keeps the rows in memory: for tests, scripts and small lookups. Every row it keeps inherits nothing
 * (keyed by untrusted column names, see ROW_PROTOTYPE): a row that comes as a plain object (from a user's transform,
 * or from pg's own row parsing on the cursor path) is copied into one that does.
 */
export interface MemorySink<R> extends Sink<R> {
  /** The rows of the last run, in arrival order. */
  readonly rows: readonly R[]
  /** The shape of the last run. */
  readonly shape: Shape | undefined
}

/**
 * `R` is the rows' type. Without transforms, `extract()` checks it against the source's rows, so a wrong
 * `memorySink<T>()` does not compile, and an inline `to: memorySink()` takes the source's row type.
 *
 * @example
 * const sink = memorySink<{ id: number; name: string }>()
 * await extract({ from: querySource(source, db.selectFrom('customers').select(['id', 'name']), { name: 'customers' }), to: sink })
 * console.log(sink.rows[0]?.name)
 */
export function memorySink<R = Record<string, unknown>>(): MemorySink<R> {
  let rows: R[] = []
  let lastShape: Shape | undefined
  return {
    name: 'memory',
    atomic: true,
    get rows() {
      return rows
    },
    get shape() {
      return lastShape
    },
    async write(batches: AsyncIterable<Batch<R>>, shape: Shape, ctx: RunContext): Promise<SinkResult> {
      const received: R[] = []
      for await (const batch of batches) {
        if (ctx.signal.aborted) throw new AbortedError('extraction aborted', { step: 'sink' })
        for (const row of batch.rows) received.push(safeRow(row as R & object))
      }
      await ctx.beforeCommit?.()
      rows = received
      lastShape = shape
      return { rows: received.length, bytes: 0, target: 'memory' }
    },
  }
}
