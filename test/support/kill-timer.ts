import type { ChildProcess } from 'node:child_process'

/**
 * SIGKILLs `child` `delayMs` after `begin()` is first called (the child's first sign of work: a child's start takes
 * seconds when other test files share the machine, so a delay counted from the spawn could land before it works),
 * or after 30 s if `begin()` never is.
 */
export function killTimer(child: ChildProcess, delayMs: number): { begin(): void; clear(): void } {
  let begun = false
  let timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  return {
    begin() {
      if (begun) return
      begun = true
      clearTimeout(timer)
      timer = setTimeout(() => child.kill('SIGKILL'), delayMs)
    },
    clear: () => clearTimeout(timer),
  }
}
