import { readdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Checkpoint, CheckpointKey, CheckpointStore } from '../../checkpoints/checkpoint.js'
import { keyText } from '../../checkpoints/key-text.js'
import { ConfigError } from '../../errors.js'
import { currentGeneration, MANIFEST, readJson, runDirectories, STATE_DIR, tablePaths, type TablePaths } from './layout.js'
import type { ParquetManifest } from './manifest.js'

export interface ParquetCheckpointStore extends CheckpointStore {
  /** The sink directory's absolute path: parquetSink writing there keeps checkpoints in its run manifests. */
  readonly parquetDir: string
  /** The latest checkpoint of `key` among the manifests of one table. */
  readIn(paths: TablePaths, key: CheckpointKey): Promise<Checkpoint | undefined>
}

/**
 * Checkpoints kept in the run manifests of a parquetSink directory: a checkpoint exists exactly when the files of the
 * run that reached it are visible (both appear in one rename), so it is never ahead of the data nor behind it.
 */
export function parquetCheckpoints(dir: string): ParquetCheckpointStore {
  const parquetDir = resolve(dir)
  const readIn = async (paths: TablePaths, key: CheckpointKey): Promise<Checkpoint | undefined> => {
    const generation = await currentGeneration(paths).catch(() => undefined)
    if (!generation) return undefined
    const wanted = keyText(key)
    // Newest run first: the first manifest with this key holds its latest checkpoint.
    for (const run of (await runDirectories(generation)).reverse()) {
      const manifest = await readJson<ParquetManifest>(join(generation, run, MANIFEST))
      if (manifest?.position && keyText(manifest.position.key) === wanted) return manifest.position.checkpoint
    }
    return undefined
  }
  return {
    name: `parquet manifests in ${parquetDir}`,
    parquetDir,
    readIn,
    async read(key) {
      // The key names the source table, not the target: every table of the directory is searched.
      const names = await readdir(parquetDir).catch(() => [] as string[])
      for (const name of names.filter((entry) => entry !== STATE_DIR)) {
        const found = await readIn(tablePaths(parquetDir, name), key)
        if (found) return found
      }
      return undefined
    },
    async write() {
      throw new ConfigError(
        'checkpoints',
        `checkpoints in ${parquetDir} are written by parquetSink with the files they cover; give other sinks fileCheckpoints() or postgresCheckpoints()`,
      )
    },
  }
}
