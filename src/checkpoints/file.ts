import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { CheckpointConflictError, ConfigError } from '../errors.js'
import type { Checkpoint, CheckpointStore } from './checkpoint.js'
import { withFileLock } from './file-lock.js'
import { keyText } from './key-text.js'

/**
 * Checkpoints in a JSON file, replaced atomically (written beside it, then renamed), so a crash leaves the old
 * file or the new one. Writes hold a lock file (`<path>.lock`), so two processes never both move one checkpoint.
 * Claimed before the sink commits and written after it: see docs/incremental.md.
 */
export function fileCheckpoints(path: string): CheckpointStore {
  if (!path) throw new ConfigError('path', 'fileCheckpoints needs a file path')
  const load = (): Record<string, Checkpoint> => {
    try {
      return Object.assign(Object.create(null), JSON.parse(readFileSync(path, 'utf8'))) as Record<string, Checkpoint>
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return Object.create(null) as Record<string, Checkpoint>
      throw new ConfigError('path', `cannot read checkpoints from ${path}: ${(error as Error).message}`, { cause: error })
    }
  }
  const save = (all: Record<string, Checkpoint>) => {
    mkdirSync(dirname(path), { recursive: true })
    const temporary = `${path}.${process.pid}.tmp`
    writeFileSync(temporary, `${JSON.stringify(all, null, 2)}\n`)
    renameSync(temporary, path)
  }
  return {
    name: `file checkpoints ${path}`,
    async read(key) {
      return load()[keyText(key)]
    },
    write: (key, next, expectedRunId) =>
      withFileLock(path, () => {
        const all = load()
        const current = all[keyText(key)]
        if ((current?.runId ?? null) !== expectedRunId) {
          throw new CheckpointConflictError(`the checkpoint of ${key.schema}.${key.table} in ${path} was moved by run ${current?.runId}`, {
            context: { schema: key.schema, table: key.table },
          })
        }
        all[keyText(key)] = next
        save(all)
      }),
  }
}
