import { randomBytes } from 'node:crypto'
import { Queue } from 'bullmq'

/** The Redis the tests use (.ci/run starts it when it is not up). */
export const REDIS = Object.freeze({ host: '127.0.0.1', port: 6379 })

/**
 * A queue name and key prefix of its own for one test: runs never share keys, so no test needs to empty Redis
 * (none may FLUSHALL). `remove()` deletes this queue's keys only.
 */
export function uniqueQueue(label: string): {
  name: string
  prefix: string
  /** As `scaleOut` and `extractionWorker` take it. */
  options: { name: string; prefix: string; connection: typeof REDIS }
  remove(): Promise<void>
} {
  const id = randomBytes(4).toString('hex')
  const name = `${label}-${id}`
  const prefix = `pgdk-test-${id}`
  return {
    name,
    prefix,
    options: { name, prefix, connection: REDIS },
    remove: async () => {
      const queue = new Queue(name, { connection: REDIS, prefix })
      try {
        await queue.obliterate({ force: true })
      } finally {
        await queue.close()
      }
    },
  }
}
