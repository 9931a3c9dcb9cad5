/**
 * Runs `tasks` with at most `concurrency` at a time and yields their items as they come, through a bounded
 * buffer: a producer waits while the buffer is full, so a slow consumer slows every producer (backpressure).
 * The first error stops everything and is thrown to the consumer; leaving the loop early stops the producers.
 */
export async function* mergeConcurrently<T>(
  workers: number,
  run: (worker: number, emit: (item: T) => Promise<void>, stopped: () => boolean) => Promise<void>,
  capacity = Math.max(2, workers * 2),
): AsyncGenerator<T> {
  const buffer: T[] = []
  let failure: { error: unknown } | undefined
  let running = workers
  let stopped = false
  let wakeConsumer: (() => void) | undefined
  const wakeProducers: (() => void)[] = []
  const notifyConsumer = () => {
    wakeConsumer?.()
    wakeConsumer = undefined
  }
  const notifyProducers = () => {
    for (const wake of wakeProducers.splice(0)) wake()
  }
  const emit = async (item: T): Promise<void> => {
    while (buffer.length >= capacity && !stopped) await new Promise<void>((resolve) => wakeProducers.push(resolve))
    if (stopped) throw new StoppedError()
    buffer.push(item)
    notifyConsumer()
  }
  const tasks = Array.from({ length: workers }, (_, worker) =>
    run(worker, emit, () => stopped)
      .catch((error: unknown) => {
        if (!(error instanceof StoppedError) && !failure) {
          failure = { error }
          stopped = true
          notifyProducers()
        }
      })
      .finally(() => {
        running--
        notifyConsumer()
      }),
  )
  try {
    for (;;) {
      if (failure) throw failure.error
      if (buffer.length > 0) {
        const item = buffer.shift() as T
        notifyProducers()
        yield item
        continue
      }
      if (running === 0) break
      await new Promise<void>((resolve) => (wakeConsumer = resolve))
    }
    if (failure) throw (failure as { error: unknown }).error
  } finally {
    stopped = true
    notifyProducers()
    await Promise.all(tasks)
  }
}

/** Thrown inside a producer when the consumer has gone. */
export class StoppedError extends Error {}
