/**
 * One capture of the CDC memory case (bench/cdc.ts, `--cases cdc-large-tx`), in its own process so that its peak RSS
 * is the capture's own: captureChanges with `apply: true` from the built library (dist/), as users run it, until
 * `changes` changes landed. Prints one JSON line: { changes, seconds, maxRssBytes, peakHeapBytes, peakExternalBytes,
 * spilledTransactions, cpuSeconds }.
 *
 *   node bench/cdc-large-tx.mjs <sourceUrl> <warehouseUrl> <slot> <publication> <schema> <changes> <streaming: on|off>
 */
import { captureChanges, connect } from '../dist/index.js'

const [sourceUrl, warehouseUrl, slot, publication, schema, changesText, streamingText] = process.argv.slice(2)
const changes = Number(changesText)
const source = connect({ url: sourceUrl, ssl: { mode: 'disable' } })
const warehouse = connect({ url: warehouseUrl, ssl: { mode: 'disable' } })

// What the peak is made of: V8's heap (reserved) and memory outside it (Buffers, pg's socket buffers), sampled.
let peakHeapBytes = 0
let peakExternalBytes = 0
const sample = () => {
  const memory = process.memoryUsage()
  peakHeapBytes = Math.max(peakHeapBytes, memory.heapTotal)
  peakExternalBytes = Math.max(peakExternalBytes, memory.external + memory.arrayBuffers)
}
const sampler = setInterval(sample, 200)

const controller = new AbortController()
const timeout = setTimeout(() => controller.abort(), 3_600_000)
let landed = 0
let doneAt = 0
const cpuBefore = process.cpuUsage()
const started = performance.now()
let report
try {
  report = await captureChanges(source, {
    slot,
    publication,
    schema,
    to: warehouse,
    apply: true,
    streaming: streamingText !== 'off',
    maxBatchChanges: 10_000,
    maxBatchMs: 100,
    signal: controller.signal,
    onBatch: (batch) => {
      landed += batch.changes
      if (landed >= changes) {
        doneAt = performance.now()
        controller.abort()
      }
    },
  })
} finally {
  clearTimeout(timeout)
  clearInterval(sampler)
  await source.close()
  await warehouse.close()
}
sample()
const cpu = process.cpuUsage(cpuBefore)
console.log(
  JSON.stringify({
    changes: landed,
    seconds: ((doneAt || performance.now()) - started) / 1000,
    // resourceUsage().maxRSS is in kilobytes.
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    peakHeapBytes,
    peakExternalBytes,
    spilledTransactions: report.spilledTransactions,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  }),
)
