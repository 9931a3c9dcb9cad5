/**
 * A scale-out coordinator process for the crash test: "planned <runId> <commit job id>", then "progress <piecesDone> <rows>"
 * lines, then "done <rows>".
 *   node --import tsx test/support/scale-out-coordinator.ts <sourceUrl> <warehouseUrl> <queue> <prefix> <table> <pieces>
 */
import { connect } from '../../src/index.js'
import { commitJobId, scaleOut } from '../../src/bullmq.js'
import { REDIS } from './redis.js'

const [sourceUrl, warehouseUrl, name, prefix, table, pieces] = process.argv.slice(2) as [string, string, string, string, string, string]
const source = connect(sourceUrl)
const warehouse = connect(warehouseUrl)
const report = await scaleOut(source, warehouse, {
  tables: [{ table, pieces: Number(pieces) }],
  queue: { name, prefix, connection: REDIS },
  onPlanned: (plan) => process.stdout.write(`planned ${plan.runId} ${commitJobId(plan)}\n`),
  onProgress: (progress) => process.stdout.write(`progress ${progress.piecesDone} ${progress.rows}\n`),
})
process.stdout.write(`done ${report.rows}\n`)
await source.close()
await warehouse.close()
