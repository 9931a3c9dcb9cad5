/**
 * Runs incremental extractions of one table in a loop until killed (used by the crash test).
 * Prints "started" and "finished" lines so the parent knows where each kill landed.
 *   node --import tsx test/support/incremental-child.ts <sourceUrl> <warehouseUrl> <table>
 */
import { bronzeMetadata, connect, extract, incrementalSource, postgresSink } from '../../src/index.js'

const [sourceUrl, warehouseUrl, table] = process.argv.slice(2) as [string, string, string]
const source = connect(sourceUrl)
const warehouse = connect(warehouseUrl)
for (;;) {
  process.stdout.write('started\n')
  await extract({
    from: incrementalSource(source, { table, cursorColumn: 'updated_at', lookback: '1 second', batchSize: 50 }),
    through: [bronzeMetadata()],
    to: postgresSink(warehouse, { mode: 'merge' }),
    retry: false,
  })
  process.stdout.write('finished\n')
}
