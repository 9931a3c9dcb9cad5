/**
 * Moves one checkpoint in a file store as fast as it can for `ms` milliseconds, each write conditional on the one it
 * read (the claim of a run), and prints how many succeeded (the file-store test runs several at once).
 *   node --import tsx test/support/file-store-child.ts <path> <ms>
 */
import { fileCheckpoints } from '../../src/index.js'

const [path, ms] = process.argv.slice(2) as [string, string]
const store = fileCheckpoints(path)
const key = { source: 's', schema: 'public', table: 't', pipeline: 'p' }
let moved = 0
for (const until = Date.now() + Number(ms); Date.now() < until;) {
  const current = await store.read(key)
  const count = Number(current?.runId ?? 0)
  const next = {
    cursorColumn: 'c',
    value: null,
    lower: null,
    horizon: '1',
    snapshot: '1:1:',
    runId: String(count + 1),
    rows: 0,
    status: 'committed' as const,
    startedAt: '',
    updatedAt: '',
  }
  try {
    await store.write(key, next, current?.runId ?? null)
    moved++
  } catch {
    // Another process moved it first: read again.
  }
}
process.stdout.write(`${moved}\n`)
