/**
 * One worker process of the scale-out bench: takes pieces until SIGTERM. Prints "ready" once it listens; "pause" and
 * "resume" on stdin stop and restart its taking jobs (answered with "paused", "resumed").
 *   node --import tsx bench/scale-out-worker.ts <url> <queue> <prefix>
 */
import { connect } from '../src/index.js'
import { extractionWorker } from '../src/bullmq.js'

const [url, name, prefix] = process.argv.slice(2) as [string, string, string]
const source = connect(url)
const warehouse = connect(url)
const worker = extractionWorker(source, warehouse, { queue: { name, prefix, connection: { host: '127.0.0.1', port: 6379 } } })
await worker.worker.waitUntilReady()
process.stdout.write('ready\n')
/** A failed stop or pause is reported and ends the process with exit code 1, not as an unhandled rejection. */
const fail = (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
}
// The bench runs cases with fewer workers than it started: it pauses the others between runs.
async function obey(data: string): Promise<void> {
  for (const line of data.split('\n')) {
    if (line === 'pause') {
      await worker.worker.pause()
      process.stdout.write('paused\n')
    } else if (line === 'resume') {
      worker.worker.resume()
      process.stdout.write('resumed\n')
    }
  }
}
process.stdin.setEncoding('utf8').on('data', (data: string) => {
  obey(data).catch(fail)
})
async function stop(): Promise<void> {
  await worker.close()
  await source.close()
  await warehouse.close()
  process.exit(0)
}
process.on('SIGTERM', () => {
  stop().catch(fail)
})
