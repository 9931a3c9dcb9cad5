import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const entry = fileURLToPath(new URL('../../src/cli/index.ts', import.meta.url))

export interface CliRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  /** stdout's JSON lines, parsed (the output when stdout is not a terminal). */
  readonly events: Record<string, unknown>[]
}

/**
 * Runs the `pg-datakit` CLI from source as a process (`node --import tsx src/cli/index.ts ...args`), its stdout a
 * pipe, with `env` over an environment that has no SOURCE_DATABASE_URL / WAREHOUSE_DATABASE_URL of its own.
 */
export function runCli(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
  options: { onStdout?: (stdoutSoFar: string, child: ChildProcess) => void } = {},
): Promise<CliRun> {
  const base = { ...process.env }
  delete base.SOURCE_DATABASE_URL
  delete base.WAREHOUSE_DATABASE_URL
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      options.onStdout?.(stdout, child)
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code) => {
      const events = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
      resolve({ code, stdout, stderr, events })
    })
  })
}

/** The events of one kind, e.g. `progress`. */
export function eventsOf(run: CliRun, event: string): Record<string, unknown>[] {
  return run.events.filter((line) => line.event === event)
}
