import { spawn, type ChildProcess } from 'node:child_process'

/**
 * A detached shell that waits for this process to end and then runs `cleanup` (argv, run without a shell), then
 * deletes `directory`. A throwaway cluster outlives a test run that is killed (SIGKILL, a closed terminal, a CI
 * timeout): the postmaster is its own process. The watchdog stops it then. `cancel()` ends the watchdog when the
 * cluster was stopped the normal way.
 */
export function watchForOrphan(cleanup: readonly string[], directory: string): { cancel(): void } {
  // The paths and the command go in as positional arguments, never pasted into the script.
  const script = [
    'parent=$1; directory=$2; shift 2',
    'while kill -0 "$parent" 2>/dev/null; do sleep 1; done',
    'if [ -d "$directory" ]; then "$@" >/dev/null 2>&1; rm -rf "$directory"; fi',
  ].join('\n')
  let child: ChildProcess | undefined = spawn('/bin/sh', ['-c', script, 'pg-datakit-watchdog', String(process.pid), directory, ...cleanup], {
    detached: true,
    stdio: 'ignore',
  })
  child.on('error', () => undefined) // no /bin/sh: nothing watches, as before
  child.unref()
  return {
    cancel() {
      child?.kill()
      child = undefined
    },
  }
}
