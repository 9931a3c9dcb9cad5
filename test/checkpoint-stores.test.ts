import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { fileCheckpoints } from '../src/index.js'

const CHILD = fileURLToPath(new URL('./support/file-store-child.ts', import.meta.url))
const run = promisify(execFile)

describe('fileCheckpoints', () => {
  it('moves a checkpoint from exactly one writer at a time across processes (no lost claim)', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdk-file-store-'))
    const path = join(dir, 'checkpoints.json')
    try {
      const outputs = await Promise.all([1, 2, 3].map(() => run(process.execPath, ['--import', 'tsx', CHILD, path, '3000'])))
      const moved = outputs.map((output) => Number(output.stdout.trim()))
      const final = Number((await fileCheckpoints(path).read({ source: 's', schema: 'public', table: 't', pipeline: 'p' }))?.runId)
      // Every successful conditional write moved the count by one from the value it read: none was lost.
      expect(moved.every((count) => count > 0)).toBe(true)
      expect(final).toBe(moved.reduce((sum, count) => sum + count, 0))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
