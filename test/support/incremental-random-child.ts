/**
 * Runs two incremental pipelines of one table in a loop until killed (the randomized writer test): one appends every
 * row version, one merges by key. Prints "started" and "finished" lines so the parent knows where each kill landed.
 *   node --import tsx test/support/incremental-random-child.ts <sourceUrl> <warehouseUrl> <table> [lookback]
 */
import { bronzeMetadata, connect, extract, incrementalSource, postgresSink } from '../../src/index.js'

const [sourceUrl, warehouseUrl, table, lookback] = process.argv.slice(2) as [string, string, string, string | undefined]
const source = connect(sourceUrl)
const warehouse = connect(warehouseUrl)
const from = incrementalSource(source, { table, cursorColumn: 'c', batchSize: 100, ...(lookback ? { lookback } : {}) })
for (;;) {
  process.stdout.write('started\n')
  await extract({ from, through: [bronzeMetadata()], to: postgresSink(warehouse, { mode: 'append', table: `${table}_append` }), retry: false })
  await extract({ from, to: postgresSink(warehouse, { mode: 'merge', table: `${table}_merge` }), retry: false })
  process.stdout.write('finished\n')
}
