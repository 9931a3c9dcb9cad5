/**
 * Captures changes until killed (used by the capture crash test).
 *   node --import tsx test/support/capture-child.ts <sourceUrl> <warehouseUrl> <slot> <publication>
 */
import { captureChanges, connect } from '../../src/index.js'

const [sourceUrl, warehouseUrl, slot, publication] = process.argv.slice(2) as [string, string, string, string]
await captureChanges(connect(sourceUrl), {
  slot,
  publication,
  to: connect(warehouseUrl),
  maxBatchChanges: 200,
  apply: true,
  maxBatchMs: 20,
  // The crash test's multi-row updates (tens of rows) go through a spill file, its one-row changes stay in memory.
  spill: { spillAfterChanges: 10 },
  onBatch: () => process.stdout.write('batch\n'),
})
