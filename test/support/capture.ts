import { captureChanges, type CaptureReport, type Connection } from '../../src/index.js'

export interface CaptureUntilOptions {
  readonly source: Connection
  readonly warehouse: Connection
  readonly slot: string
  readonly publication: string
  /** Stop once this many changes have landed. */
  readonly changes?: number
  /** Stop when nothing lands for this long: before the first batch, and after each one. */
  readonly firstMs?: number
  readonly idleMs?: number
  readonly apply?: boolean
  readonly initialSnapshot?: boolean
}

/** Runs a capture until enough changes have landed or it has gone quiet, then stops it. */
export async function captureUntil(options: CaptureUntilOptions): Promise<CaptureReport> {
  const { changes = Number.POSITIVE_INFINITY, firstMs = 5_000, idleMs = 5_000 } = options
  const controller = new AbortController()
  let landed = 0
  let timer = setTimeout(() => controller.abort(), firstMs)
  try {
    return await captureChanges(options.source, {
      slot: options.slot,
      publication: options.publication,
      to: options.warehouse,
      maxBatchMs: 50,
      ...(options.apply ? { apply: true } : {}),
      ...(options.initialSnapshot ? { initialSnapshot: true } : {}),
      signal: controller.signal,
      onBatch: (batch) => {
        landed += batch.changes
        clearTimeout(timer)
        timer = setTimeout(() => controller.abort(), idleMs)
        if (landed >= changes) controller.abort()
      },
    })
  } finally {
    clearTimeout(timer)
  }
}
