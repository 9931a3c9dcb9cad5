import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { ConfigError } from '../errors.js'

/**
 * Runs `fn` holding `<path>.lock`, created exclusively (O_EXCL), so that the read-compare-write of a checkpoint file
 * is atomic across processes (two cron runs at once): without it both could read the old checkpoint and both
 * claim it. A lock whose process is gone (killed) or older than `staleMs` is taken over.
 */
export async function withFileLock<T>(path: string, fn: () => T, options: { waitMs?: number; staleMs?: number } = {}): Promise<T> {
  const { waitMs = 10_000, staleMs = 30_000 } = options
  const lock = `${path}.lock`
  const started = Date.now()
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    let fd: number | undefined
    try {
      fd = openSync(lock, 'wx')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new ConfigError('path', `cannot lock checkpoints at ${path}: ${(error as Error).message}`, { cause: error })
      }
    }
    if (fd !== undefined) {
      try {
        writeSync(fd, String(process.pid))
        closeSync(fd)
        return fn()
      } finally {
        unlinkSync(lock)
      }
    }
    if (isStale(lock, staleMs)) {
      try {
        unlinkSync(lock)
      } catch {
        // Another process took it over first.
      }
      continue
    }
    if (Date.now() - started > waitMs) {
      throw new ConfigError('path', `checkpoints at ${path} stayed locked by another process for ${waitMs} ms (${lock})`)
    }
    await sleep(delay)
  }
}

function isStale(lock: string, staleMs: number): boolean {
  try {
    const pid = Number(readFileSync(lock, 'utf8'))
    if (Date.now() - statSync(lock).mtimeMs > staleMs) return true
    if (!Number.isInteger(pid) || pid <= 0) return false
    process.kill(pid, 0)
    return false
  } catch (error) {
    // ESRCH: the process is gone. ENOENT: the lock was just released.
    return (error as NodeJS.ErrnoException).code === 'ESRCH'
  }
}
