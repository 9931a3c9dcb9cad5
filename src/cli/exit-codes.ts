import {
  AbortedError,
  CheckpointConflictError,
  CheckpointWriteError,
  ConfigError,
  ConnectionError,
  ConnectionLostError,
  DatakitError,
  PoolTimeoutError,
} from '../errors.js'

/**
 * The CLI's exit codes, one per kind of failure an operator (or the cron job's wrapper) acts on differently.
 * docs/cli.md has the table; keep them stable: scripts test them.
 */
export const EXIT = Object.freeze({
  /** The command did what it was asked. */
  ok: 0,
  /** A failure pg-datakit did not expect (a bug, or an error of a kind it does not know): see the message. */
  unexpected: 1,
  /** A bad command line, option or environment variable (`ConfigError`), or a destructive command without `--yes`. */
  usage: 2,
  /** A server could not be reached, refused the connection, or the connection was lost. Often passes on its own. */
  connection: 3,
  /** The source failed: an unknown table or column, a query error, a permission, a timeout while reading. */
  source: 4,
  /** The warehouse failed to take the rows: schema drift, a write error, a timeout while writing. Nothing was kept. */
  sink: 5,
  /** Another run moved the checkpoint meanwhile (two runs of one extraction at once). Nothing was written. */
  checkpointConflict: 6,
  /** The rows were committed but their checkpoint could not be written: the next run reads the same range again. */
  checkpointWrite: 7,
  /** A transform failed. */
  transform: 8,
  /** Interrupted (SIGINT or SIGTERM): nothing was committed. 128 + SIGINT, as shells do. */
  interrupted: 130,
})

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** The exit code for an error: by its class first, then by the step that failed. */
export function exitCodeOf(error: unknown): ExitCode {
  if (error instanceof ConfigError) return EXIT.usage
  if (error instanceof ConnectionError || error instanceof ConnectionLostError || error instanceof PoolTimeoutError) return EXIT.connection
  if (error instanceof CheckpointConflictError) return EXIT.checkpointConflict
  if (error instanceof CheckpointWriteError) return EXIT.checkpointWrite
  if (error instanceof AbortedError) return EXIT.interrupted
  if (!(error instanceof DatakitError)) return EXIT.unexpected
  switch (error.step) {
    case 'config':
      return EXIT.usage
    case 'connect':
      return EXIT.connection
    case 'source':
      return EXIT.source
    case 'sink':
      return EXIT.sink
    case 'transform':
      return EXIT.transform
    default:
      return EXIT.unexpected
  }
}
