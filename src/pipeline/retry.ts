import { setTimeout as sleep } from 'node:timers/promises'
import { z } from 'zod'
import { AbortedError, DatakitError } from '../errors.js'

export const retryOptionsSchema = z.strictObject({
  /** Attempts in all, the first included; 1 turns retries off. */
  attempts: z.number().int().min(1).max(100).default(3),
  /** The first delay's upper bound; each further delay's bound doubles. */
  initialDelayMs: z.number().int().nonnegative().default(250),
  maxDelayMs: z.number().int().nonnegative().default(10_000),
})

export type RetryOptions = z.input<typeof retryOptionsSchema>

/**
 * Whether running the whole pipeline again is safe and may succeed: the error says nothing was committed
 * (a connection refused, reset or lost before the commit, no free pool client, a serialization failure or a
 * deadlock), and the sink promises that a failed write leaves the target as it was.
 */
export function isRetryable(error: unknown, sinkIsAtomic: boolean): boolean {
  return sinkIsAtomic && error instanceof DatakitError && error.retryable
}

/** "Full jitter" backoff: a random delay up to min(max, initial * 2^(attempt-1)). */
export function backoffDelay(attempt: number, options: z.output<typeof retryOptionsSchema>, random = Math.random): number {
  const bound = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** (attempt - 1))
  return Math.round(random() * bound)
}

export async function waitBeforeRetry(delayMs: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(delayMs, undefined, { signal })
  } catch (error) {
    throw new AbortedError('extraction aborted while waiting to retry', { step: 'pipeline', cause: error })
  }
}
