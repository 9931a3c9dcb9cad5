import { spawn, type ChildProcess } from 'node:child_process'

/** A child process (`node --import tsx script ...args`) whose stdout lines are kept and can be waited for. */
export interface Child {
  readonly process: ChildProcess
  readonly lines: string[]
  /** Resolves with the first line (already printed or to come) that matches; rejects if the child exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  /** Calls `listener` for every line from now on. */
  onLine(listener: (line: string) => void): void
  /** Resolves when the child has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr(): string
}

export function startChild(script: string, args: readonly string[], env: Record<string, string> = {}): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  const lines: string[] = []
  const listeners: ((line: string) => void)[] = []
  let partial = ''
  let stderr = ''
  child.stdout.on('data', (data: Buffer) => {
    const parts = (partial + data.toString()).split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) {
      lines.push(line)
      for (const listener of listeners) listener(line)
    }
  })
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  return {
    process: child,
    lines,
    onLine: (listener) => void listeners.push(listener),
    exited,
    stderr: () => stderr,
    waitFor(pattern, timeoutMs = 120_000) {
      for (const line of lines) {
        const match = line.match(pattern)
        if (match) return Promise.resolve(match)
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs)
        listeners.push((line) => {
          const match = line.match(pattern)
          if (match) {
            clearTimeout(timer)
            resolve(match)
          }
        })
        exited.then(({ code, signal }) => {
          clearTimeout(timer)
          reject(new Error(`the child exited (${code ?? signal}) before a line matching ${pattern}; stderr: ${stderr}`))
        }, reject)
      })
    },
  }
}

/** Polls `check` until it returns true (no fixed sleep: each try waits only for the next poll). */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 60_000, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}
