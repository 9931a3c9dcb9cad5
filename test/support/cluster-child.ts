/**
 * Starts a throwaway cluster, prints its URL, and waits to be killed (used by the throwaway cluster test).
 *   node --import tsx test/support/cluster-child.ts
 */
import { startThrowawayCluster } from '../../src/testing/index.js'

const server = await startThrowawayCluster()
process.stdout.write(`${server.url}\n`)
setInterval(() => undefined, 60_000)
