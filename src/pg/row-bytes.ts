/**
 * A cheap estimate of how much memory a row's values hold, used to keep batches within a byte budget:
 * strings by length, Buffers by size, arrays and objects by their parts, 8 bytes for anything else.
 */
export function estimateRowBytes(row: Record<string, unknown>): number {
  let bytes = 16
  for (const key in row) bytes += estimateValueBytes(row[key])
  return bytes
}

function estimateValueBytes(value: unknown): number {
  if (typeof value === 'string') return value.length + 16
  if (value instanceof Uint8Array) return value.byteLength + 32
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + estimateValueBytes(item), 16)
  if (value !== null && typeof value === 'object') return estimateRowBytes(value as Record<string, unknown>)
  return 8
}

/** How many rows the next read may take: the row limit, or fewer when rows are large. */
export function rowsWithinBudget(sample: readonly Record<string, unknown>[], maxBatchBytes: number, maxRows: number): number {
  if (sample.length === 0) return maxRows
  const step = Math.max(1, Math.floor(sample.length / 16))
  let bytes = 0
  let counted = 0
  for (let index = 0; index < sample.length; index += step) {
    bytes += estimateRowBytes(sample[index] as Record<string, unknown>)
    counted++
  }
  return Math.max(1, Math.min(maxRows, Math.floor(maxBatchBytes / (bytes / counted))))
}
