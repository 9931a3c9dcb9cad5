import type { SizeEstimate } from '../pg/estimate.js'
import { perSecond } from './measured.js'
import type { Progress } from './report.js'

/** Where a run stands, as `progressEvent` turns it into a `Progress`. */
export interface RunPosition {
  readonly runId: string
  readonly rows: number
  readonly bytes: number
  readonly elapsedMs: number
  readonly step: string
  readonly final: boolean
}

/**
 * A progress event with the estimate's total, percent and ETA. Statistics may be stale, so the total never falls below
 * the rows already read, and the percent stays below 100 until the final event (when the total is the exact count).
 */
export function progressEvent(position: RunPosition, estimate: SizeEstimate | undefined): Progress {
  const { runId, rows, bytes, elapsedMs, step, final } = position
  const rowsPerSecond = perSecond(rows, elapsedMs)
  const event: Progress = { runId, rows, bytes, elapsedMs, rowsPerSecond, step, final }
  const relationBytes = estimate?.bytes
  const withBytes = relationBytes === undefined ? event : { ...event, relationBytes }
  if (estimate?.rows === undefined) return withBytes
  const totalRows = final ? rows : Math.max(estimate.rows, rows)
  if (final) return { ...withBytes, totalRows, percent: 100, etaSeconds: 0 }
  const percent = totalRows === 0 ? 0 : Math.min(99.9, Math.floor((rows / totalRows) * 1000) / 10)
  const etaSeconds = rowsPerSecond > 0 ? Math.round((totalRows - rows) / rowsPerSecond) : undefined
  return { ...withBytes, totalRows, percent, ...(etaSeconds === undefined ? {} : { etaSeconds }) }
}
