#!/usr/bin/env node
/**
 * The `pg-datakit` command (docs/cli.md). Exit codes: src/cli/exit-codes.ts.
 */
import { runCli } from './program.js'

const controller = new AbortController()
let interrupted = 0
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    // The first signal aborts the run, which rolls back and releases its connections; a second one leaves at once.
    if (++interrupted > 1) process.exit(130)
    controller.abort()
  })
}

// A reader that went away (`pg-datakit ... | head`) ends the run like an interrupt, not with an unhandled EPIPE.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error
  controller.abort()
})

// No top-level await: the entry is also built as CommonJS.
runCli(process.argv, { stdout: process.stdout, stderr: process.stderr, signal: controller.signal }).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    process.stderr.write(`pg-datakit: ${String(error)}\n`)
    process.exitCode = 1
  },
)
