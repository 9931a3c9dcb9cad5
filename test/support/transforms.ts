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

/**
 * A meeting point for `count` runs: each run's copy of the transform holds its first batch until every run has one,
 * so all of them have read their checkpoint before any commits, however the machine schedules them.
 */
export function meetingPoint(count: number): Transform {
  let arrived = 0
  let release: () => void = () => undefined
  const everyone = new Promise<void>((resolve) => (release = resolve))
  return {
    name: 'meet',
    shape: (input) => input,
    async *apply(batches) {
      let first = true
      for await (const batch of batches) {
        if (first && ++arrived === count) release()
        if (first) await everyone
        first = false
        yield batch
      }
    },
  }
}
