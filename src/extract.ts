import { randomUUID } from 'node:crypto'
import type { Batch, Row, RunConstants, RunContext, Shape, Sink, SinkResult, Source, Transform } from './contracts.js'
import { countLines } from './pg/copy-line-suffix.js'
import { AbortedError, classifyError, DatakitError, SourceQueryError, TransformError } from './errors.js'

/** A progress event, sent after each batch reaches the sink's input. */
export interface Progress {
  readonly runId: string
  readonly rows: number
  /** Bytes the sink has written so far (COPY bytes for the PostgreSQL sink). */
  readonly bytes: number
  readonly elapsedMs: number
  readonly rowsPerSecond: number
  /** The step the pipeline is in: `source`, a transform's name, or `sink`. */
  readonly step: string
}

/** Time each step spent on its own work (not waiting for the step before it). */
export interface StepTiming {
  readonly step: 'source' | 'transform' | 'sink'
  readonly name: string
  readonly ms: number
  readonly rows: number
}

/** What a successful `extract()` did. */
export interface RunReport {
  readonly runId: string
  /** `copy-bytes`: COPY text went from source to sink undecoded; `rows`: rows were decoded and re-encoded. */
  readonly path: 'copy-bytes' | 'rows'
  readonly source: string
  readonly target: string
  readonly rows: number
  readonly bytes: number
  readonly startedAt: Date
  readonly finishedAt: Date
  readonly durationMs: number
  readonly rowsPerSecond: number
  readonly steps: readonly StepTiming[]
}

export interface ExtractOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly from: Source<any>
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly through?: readonly Transform<any, any>[]
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly to: Sink<any>
  readonly signal?: AbortSignal
  readonly onProgress?: (progress: Progress) => void
  /** Identifies the run in reports, errors and metadata; a random UUID when absent. */
  readonly runId?: string
  /**
   * Let COPY bytes flow from source to sink undecoded when every step supports it (default true).
   * `false` forces decoded rows, e.g. to compare both paths.
   */
  readonly fastPath?: boolean
}

/**
 * Runs a pipeline: the source's batches flow through each transform into the sink, pulled by the sink
 * (so the slowest step sets the pace and memory stays at a few batches). Resolves with a run report;
 * rejects with a typed error, after every connection the run took is released.
 *
 * @example
 * const report = await extract({
 *   from: tableSource(source, { table: 'orders' }),
 *   through: [bronzeMetadata()],
 *   to: postgresSink(warehouse, { mode: 'replace' }),
 *   onProgress: (p) => console.log(p.rows, p.rowsPerSecond),
 * })
 */
export async function extract(options: ExtractOptions): Promise<RunReport> {
  const { from, through = [], to, onProgress } = options
  const signal = options.signal ?? new AbortController().signal
  const startedAt = new Date()
  const started = performance.now()
  let bytes = 0
  const ctx: RunContext = {
    signal,
    runId: options.runId ?? randomUUID(),
    startedAt,
    reportBytes: (count) => {
      bytes += count
    },
  }
  if (signal.aborted) throw new AbortedError('extraction aborted before it started', { step: 'pipeline' })

  let shape: Shape = await from.shape()
  const shapes: Shape[] = [shape]
  for (const transform of through) {
    try {
      shape = transform.shape(shape)
    } catch (error) {
      throw classifyError(error, 'transform', { transform: transform.name }, TransformError)
    }
    shapes.push(shape)
  }

  // Trailing transforms that only add run constants (bronze metadata) are handed to a byte-path sink as values:
  // it can store them without writing them per row. The transforms before them must work on bytes.
  let constantsFrom = through.length
  while (constantsFrom > 0 && through[constantsFrom - 1]?.constantColumns) constantsFrom--
  const byteSteps = through.slice(0, constantsFrom)
  const useBytes =
    options.fastPath !== false &&
    from.copyText !== undefined &&
    to.writeCopyText !== undefined &&
    byteSteps.every((transform) => transform.copyText !== undefined)

  let rows = 0
  let lastProgress = 0
  const progress = (step: string, force: boolean) => {
    if (!onProgress) return
    const elapsedMs = performance.now() - started
    // The byte path moves many small chunks: report at most every 100 ms there.
    if (!force && elapsedMs - lastProgress < 100) return
    lastProgress = elapsedMs
    onProgress({ runId: ctx.runId, rows, bytes, elapsedMs, rowsPerSecond: perSecond(rows, elapsedMs), step })
  }

  const sourceTiming = { ms: 0, rows: 0 }
  const transformTimings = through.map(() => ({ ms: 0, rows: 0 }))
  const sourceError = (error: unknown) => classifyError(error, 'source', {}, SourceQueryError)
  const transformError = (transform: Transform) => (error: unknown) =>
    classifyError(error, 'transform', { transform: transform.name }, TransformError)

  let result: SinkResult
  if (useBytes) {
    let chunks: AsyncIterable<Buffer> = measured(from.copyText!(ctx), sourceTiming, signal, sourceError, noCount)
    byteSteps.forEach((transform, index) => {
      const step = transform.copyText!(shapes[index] as Shape, ctx)
      chunks = measured(mapChunks(chunks, step), transformTimings[index]!, signal, transformError(transform), noCount)
    })
    const constants: RunConstants | undefined =
      constantsFrom < through.length
        ? {
            columns: shape.columns.slice((shapes[constantsFrom] as Shape).columns.length),
            values: Object.assign(
              {},
              ...through.slice(constantsFrom).map((transform, index) => transform.constantColumns!(shapes[constantsFrom + index] as Shape, ctx)),
            ) as Row,
          }
        : undefined
    const counted = async function* (input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of input) {
        rows += countLines(chunk)
        yield chunk
        progress('sink', false)
      }
      progress('sink', true)
    }
    result = await to.writeCopyText!(counted(chunks), shape, ctx, constants)
  } else {
    let stream: AsyncIterable<Batch> = measured(from.batches(ctx), sourceTiming, signal, sourceError, batchRows)
    through.forEach((transform, index) => {
      stream = measured(transform.apply(stream, shapes[index] as Shape, ctx), transformTimings[index]!, signal, transformError(transform), batchRows)
    })
    const counted = async function* (input: AsyncIterable<Batch>): AsyncGenerator<Batch> {
      for await (const batch of input) {
        rows += batch.rows.length
        yield batch
        progress('sink', true)
      }
    }
    result = await to.write(counted(stream), shape, ctx)
  }
  bytes = result.bytes
  const last = transformTimings.at(-1) ?? sourceTiming
  const finishedAt = new Date()
  const durationMs = performance.now() - started
  if (useBytes) for (const timing of [sourceTiming, ...transformTimings]) timing.rows = rows
  const steps: StepTiming[] = [{ step: 'source', name: from.name, ms: sourceTiming.ms, rows: sourceTiming.rows }]
  through.forEach((transform, index) => {
    const own = transformTimings[index] as { ms: number; rows: number }
    const upstream = index === 0 ? sourceTiming : (transformTimings[index - 1] as { ms: number })
    steps.push({ step: 'transform', name: transform.name, ms: Math.max(0, own.ms - upstream.ms), rows: own.rows })
  })
  steps.push({ step: 'sink', name: to.name, ms: Math.max(0, durationMs - last.ms), rows: result.rows })
  return Object.freeze({
    runId: ctx.runId,
    path: useBytes ? 'copy-bytes' : 'rows',
    source: from.name,
    target: result.target,
    rows: result.rows,
    bytes,
    startedAt,
    finishedAt,
    durationMs,
    rowsPerSecond: perSecond(result.rows, durationMs),
    steps: Object.freeze(steps),
  })
}

function perSecond(rows: number, ms: number): number {
  return ms > 0 ? Math.round((rows * 1000) / ms) : 0
}

const batchRows = (batch: Batch): number => batch.rows.length
// On the byte path rows are counted once, where they enter the sink; per-step counts are set from that total.
const noCount = (): number => 0

async function* mapChunks(input: AsyncIterable<Buffer>, step: (chunk: Buffer) => Buffer): AsyncGenerator<Buffer> {
  for await (const chunk of input) yield step(chunk)
}

/** Passes items through, timing the upstream's `next()`, checking for abort and typing upstream errors. */
async function* measured<T>(
  input: AsyncIterable<T>,
  timing: { ms: number; rows: number },
  signal: AbortSignal,
  wrap: (error: unknown) => DatakitError,
  count: (item: T) => number,
): AsyncGenerator<T> {
  const iterator = input[Symbol.asyncIterator]()
  let done = false
  try {
    for (;;) {
      if (signal.aborted) throw new AbortedError('extraction aborted', { step: 'pipeline' })
      const begin = performance.now()
      let next: IteratorResult<T>
      try {
        next = await iterator.next()
      } catch (error) {
        done = true
        throw signal.aborted && !(error instanceof DatakitError)
          ? new AbortedError('extraction aborted', { step: 'pipeline', cause: error })
          : wrap(error)
      }
      timing.ms += performance.now() - begin
      if (next.done) {
        done = true
        return
      }
      timing.rows += count(next.value)
      yield next.value
    }
  } finally {
    if (!done) await iterator.return?.()
  }
}
