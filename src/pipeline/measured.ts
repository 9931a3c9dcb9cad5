import type { Batch } from '../contracts.js'
import { AbortedError, DatakitError } from '../errors.js'

export function perSecond(rows: number, ms: number): number {
  return ms > 0 ? Math.round((rows * 1000) / ms) : 0
}

export const batchRows = (batch: Batch): number => batch.rows.length
// On the byte path rows are counted once, where they enter the sink; per-step counts are set from that total.
export const noCount = (): number => 0

export async function* mapChunks(input: AsyncIterable<Buffer>, step: (chunk: Buffer) => Buffer): AsyncGenerator<Buffer> {
  for await (const chunk of input) yield step(chunk)
}

/** Passes items through, timing the upstream's `next()`, checking for abort and typing upstream errors. */
export async function* measured<T>(
  input: AsyncIterable<T>,
  timing: { ms: number; rows: number },
  signal: AbortSignal,
  wrap: (error: unknown) => DatakitError,
  count: (item: T) => number,
): AsyncGenerator<T> {
  const iterator = input[Symbol.asyncIterator]()
  let done = false
  try {
    for (;;) {
      if (signal.aborted) throw new AbortedError('extraction aborted', { step: 'pipeline' })
      const begin = performance.now()
      let next: IteratorResult<T>
      try {
        next = await iterator.next()
      } catch (error) {
        done = true
        throw signal.aborted && !(error instanceof DatakitError) ? new AbortedError('extraction aborted', { step: 'pipeline', cause: error }) : wrap(error)
      }
      timing.ms += performance.now() - begin
      if (next.done) {
        done = true
        return
      }
      timing.rows += count(next.value)
      yield next.value
    }
  } finally {
    if (!done) await iterator.return?.()
  }
}
