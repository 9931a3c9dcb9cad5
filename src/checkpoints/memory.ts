import { CheckpointConflictError } from '../errors.js'
import type { Checkpoint, CheckpointStore } from './checkpoint.js'
import { keyText } from './key-text.js'

/** Checkpoints in memory: for tests and for one long-lived process. */
export function memoryCheckpoints(): CheckpointStore & { readonly all: ReadonlyMap<string, Checkpoint> } {
  const all = new Map<string, Checkpoint>()
  return {
    name: 'memory checkpoints',
    all,
    async read(key) {
      return all.get(keyText(key))
    },
    async write(key, next, expectedRunId) {
      const current = all.get(keyText(key))
      if ((current?.runId ?? null) !== expectedRunId) {
        throw new CheckpointConflictError(`the checkpoint of ${key.schema}.${key.table} was moved by run ${current?.runId}`, {
          context: { schema: key.schema, table: key.table },
        })
      }
      all.set(keyText(key), next)
    },
  }
}
