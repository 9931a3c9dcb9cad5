import { afterEach, beforeEach } from 'vitest'

/**
 * Collects, during each test of the file, the rejections nobody handled (which end a Node process outside a test
 * runner) and the exceptions nobody caught: a test of async callbacks expects `reasons` to stay empty.
 */
export function watchUnhandled(): { readonly reasons: unknown[] } {
  const watched = { reasons: [] as unknown[] }
  const collect = (reason: unknown) => watched.reasons.push(reason)
  beforeEach(() => {
    watched.reasons.length = 0
    process.on('unhandledRejection', collect)
    process.on('uncaughtException', collect)
  })
  afterEach(() => {
    process.off('unhandledRejection', collect)
    process.off('uncaughtException', collect)
  })
  return watched
}
