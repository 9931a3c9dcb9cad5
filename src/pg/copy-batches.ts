import type { Batch, Row } from '../contracts.js'
import { classifyError, SourceQueryError, type ErrorContext } from '../errors.js'
import { CopyTextDecoder } from './copy-text-decoder.js'
import { rowBuilder } from './row-builder.js'
import type { Column } from './types.js'

/**
 * Decodes a stream of COPY text into batches of rows (the lossless type map), ending a batch at `batchSize` rows or
 * once its COPY bytes pass `maxBatchBytes`. Errors are typed with `context`.
 */
export async function* decodeCopyBatches(
  chunks: AsyncIterable<Buffer>,
  columns: readonly Column[],
  options: { readonly batchSize: number; readonly maxBatchBytes?: number; readonly context: ErrorContext },
): AsyncGenerator<Batch> {
  const { batchSize, maxBatchBytes = Number.POSITIVE_INFINITY, context } = options
  const decoder = new CopyTextDecoder(columns.length)
  const build = rowBuilder(columns)
  let rows: Row[] = []
  let bytes = 0
  try {
    for await (const chunk of chunks) {
      bytes += chunk.length
      for (const fields of decoder.push(chunk)) {
        rows.push(build(fields))
        if (rows.length >= batchSize || bytes >= maxBatchBytes) {
          yield { rows }
          rows = []
          bytes = 0
        }
      }
    }
    decoder.end()
  } catch (error) {
    throw classifyError(error, 'source', context, SourceQueryError)
  }
  if (rows.length) yield { rows }
}
