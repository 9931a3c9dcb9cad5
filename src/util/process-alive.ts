/** Whether a process with this pid runs (one we may not signal still runs): tells a dead run's leftovers from a live one's. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
