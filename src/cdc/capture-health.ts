import type { Connection } from '../connection/connection.js'
import type { Logger } from '../logger.js'
import { slotStatus } from './slots.js'

/** How a capture stands, from the source's slot and what the warehouse took. */
export interface CaptureHealth {
  readonly slot: string
  /** WAL the server keeps for the slot (from its restart position): disk the source cannot free. */
  readonly retainedWalBytes: number
  /** WAL written since the slot's confirmed position: how far behind the warehouse is, in bytes. */
  readonly lagBytes: number
  /** `reserved`, `extended`, `unreserved` (about to be invalidated) or `lost`. */
  readonly walStatus: string | null
  /** The end LSN of the last transaction the warehouse holds. */
  readonly lastCommitEndLsn: string
  /** When the newest transaction the warehouse holds committed on the source (ISO); null before the first. */
  readonly lastCommitTime: string | null
  /** Seconds since the warehouse last took a batch with changes; null before the first. */
  readonly secondsSinceLastBatch: number | null
}

export interface HealthOptions {
  readonly slot: string
  readonly logger: Logger
  readonly intervalMs: number
  /** Above this much retained WAL a warning is logged each time health is read. */
  readonly maxRetainedWalBytes: number
  readonly onHealth?: ((health: CaptureHealth) => unknown) | undefined
}

/**
 * Reads the slot's standing every `intervalMs` while a capture runs, hands it to `onHealth`, and warns when the source
 * keeps more WAL than `maxRetainedWalBytes` or the slot is about to be invalidated (`wal_status = 'unreserved'`).
 * Failures to read it are logged, never thrown: the capture itself notices a lost connection.
 */
export function watchHealth(
  source: Connection,
  options: HealthOptions,
  progress: () => { lastCommitEndLsn: string; lastCommitTime: string | null; lastBatchAt: number | null },
): { stop(): void } {
  let reading = false
  const read = async () => {
    if (reading) return
    reading = true
    try {
      const status = await slotStatus(source, options.slot)
      if (!status) return
      const landed = progress()
      const health: CaptureHealth = {
        slot: options.slot,
        retainedWalBytes: status.retainedBytes,
        lagBytes: status.lagBytes,
        walStatus: status.walStatus,
        lastCommitEndLsn: landed.lastCommitEndLsn,
        lastCommitTime: landed.lastCommitTime,
        secondsSinceLastBatch: landed.lastBatchAt === null ? null : (Date.now() - landed.lastBatchAt) / 1000,
      }
      await options.onHealth?.(health)
      if (health.walStatus === 'unreserved') {
        options.logger.warn(
          { ...health },
          'the slot is about to be invalidated (wal_status = unreserved): the source will remove WAL it still needs unless the capture catches up',
        )
      } else if (health.retainedWalBytes > options.maxRetainedWalBytes) {
        options.logger.warn(
          { ...health },
          `the source keeps ${Math.round(health.retainedWalBytes / 2 ** 20)} MB of WAL for the slot (more than maxRetainedWalBytes)`,
        )
      }
    } catch (error) {
      options.logger.warn({ slot: options.slot, error: error instanceof Error ? error.message : String(error) }, 'could not read or report the slot’s health')
    } finally {
      reading = false
    }
  }
  // read() logs its own failures; only a logger that throws gets here, and it must not end the process.
  const timer = setInterval(() => {
    read().catch(() => undefined)
  }, options.intervalMs)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
