import type { Checkpoint, CheckpointKey } from '../../checkpoints/checkpoint.js'
import type { Origin } from '../../contracts.js'

/**
 * `_manifest.json`, written in each run's directory before the directory is renamed into the table, so a reader (or
 * the next incremental run) that finds the directory finds what landed with it.
 */
export interface ParquetManifest {
  readonly version: 1
  readonly runId: string
  readonly table: string
  readonly mode: 'replace' | 'append'
  readonly rows: number
  /** The run's files, relative to its directory, with their sizes. */
  readonly files: readonly { readonly path: string; readonly bytes: number }[]
  /** Each column: its PostgreSQL type and the type of its Parquet column (as DuckDB names it). */
  readonly schema: readonly { readonly name: string; readonly postgresType: string; readonly parquetType: string }[]
  readonly partitionBy: readonly string[]
  readonly origin: Origin
  /** Where the source got to: an incremental run's checkpoint (its key and value); null for other sources. */
  readonly position: { readonly key: CheckpointKey; readonly checkpoint: Checkpoint } | null
  readonly startedAt: string
  readonly committedAt: string
}
