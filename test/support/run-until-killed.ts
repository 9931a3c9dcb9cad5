import { spawn } from 'node:child_process'
import { killTimer } from './kill-timer.js'

/**
 * Runs a child script (`node --import tsx script ...args`) that prints "started" and "finished" around each run, and
 * SIGKILLs it `delayMs` after its first run started. Resolves with whether a run was in progress then; rejects if the
 * child ended by itself.
 */
export function runUntilKilled(script: string, args: readonly string[], delayMs: number): Promise<{ midRun: boolean; finished: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let started = 0
    let finished = 0
    let stderr = ''
    const kill = killTimer(child, delayMs)
    child.stdout.on('data', (data: Buffer) => {
      for (const line of data.toString().split('\n')) {
        if (line === 'started') started++
        if (line === 'finished') finished++
      }
      if (started > 0) kill.begin()
    })
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()))
    child.on('exit', (code, signal) => {
      kill.clear()
      if (signal !== 'SIGKILL') reject(new Error(`the child ended by itself (${code}): ${stderr}`))
      else resolve({ midRun: started > finished, finished })
    })
  })
}
