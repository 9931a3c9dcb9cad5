import type { Batch, RunContext, Shape, Sink, SinkResult } from '../contracts.js'
import { AbortedError } from '../errors.js'

/** A sink that keeps the rows in memory: for tests, scripts and small lookups. */
export interface MemorySink<R> extends Sink<R> {
  /** The rows of the last run, in arrival order. */
  readonly rows: readonly R[]
  /** The shape of the last run. */
  readonly shape: Shape | undefined
}

/**
 * @example
 * const sink = memorySink()
 * await extract({ from: tableSource(source, { table: 'orders' }), to: sink })
 * console.log(sink.rows.length)
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
        received.push(...batch.rows)
      }
      rows = received
      lastShape = shape
      return { rows: received.length, bytes: 0, target: 'memory' }
    },
  }
}
