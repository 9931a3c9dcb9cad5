import type { Transform } from '../../src/index.js'

/** A pass-through transform that runs `action` once, when the first batch passes (e.g. to kill a backend mid-run). */
export function onFirstBatch(action: () => Promise<unknown>): Transform {
  let done = false
  return {
    name: 'onFirstBatch',
    shape: (shape) => shape,
    async *apply(batches) {
      for await (const batch of batches) {
        if (!done) {
          done = true
          await action()
        }
        yield batch
      }
    },
  }
}
