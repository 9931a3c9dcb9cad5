import type { Batch, CopyBytes, CopyFormat, OpenedSource, Row, RunConstants, RunContext, Shape, Sink, SinkResult, Source, Transform } from '../contracts.js'
import { classifyError, ConfigError, SourceQueryError, TransformError } from '../errors.js'
import { BinaryTuples } from '../pg/binary-copy.js'
import { fuseAppended } from './appended-columns.js'
import { checkpointPlan, type CheckpointRun } from './checkpoint-run.js'
import { openSource } from './open-source.js'
import { countLines } from '../pg/copy-line-suffix.js'
import { batchRows, mapChunks, measured, noCount, perSecond } from './measured.js'
import { progressEvent } from './progress.js'
import type { Progress, RunReport, StepTiming } from './report.js'

export interface RunOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- extract()'s options as they are: see ExtractOptions
  readonly from: Source<any>
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- extract()'s options as they are: see ExtractOptions
  readonly through?: readonly Transform<any, any>[]
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- extract()'s options as they are: see ExtractOptions
  readonly to: Sink<any>
  readonly signal: AbortSignal
  readonly onProgress: ((progress: Progress) => unknown) | undefined
  /** Told of an onProgress failure that came after the sink committed: too late to fail the run (see below). */
  readonly onLateProgressFailure?: (error: unknown) => void
  readonly runId: string
  readonly startedAt: Date
  readonly fastPath: boolean
  readonly copyFormat?: CopyFormat
}

/** One attempt at a pipeline: what `extract()` retries. */
export async function runOnce(options: RunOptions): Promise<RunReport> {
  const { from, to, signal, startedAt } = options
  const started = performance.now()
  // Invalid combinations (an incremental source into a replace sink, no checkpoint store) fail before anything runs.
  const checkpoints: CheckpointRun | undefined = checkpointPlan(from, to)
  // The run handles rows as Row, whatever type the caller's source gave them.
  const opened = await openSource(from as Source<Row>, {
    signal,
    runId: options.runId,
    startedAt,
    ...(checkpoints ? { previousCheckpoint: checkpoints.previousCheckpoint } : {}),
  })
  try {
    return await runOpened(options, opened, checkpoints, started)
  } finally {
    await opened.close()
  }
}

async function runOpened(options: RunOptions, opened: OpenedSource, checkpoints: CheckpointRun | undefined, started: number): Promise<RunReport> {
  const { from, to, onProgress, signal, startedAt } = options
  const through = (options.through ?? []) as readonly Transform[]
  let bytes = 0
  const counters: Record<string, number> = {}
  const pending = checkpoints?.pending(opened)
  const ctx: RunContext = {
    ...(pending ? { checkpoint: pending, beforeCommit: () => checkpoints!.beforeCommit(pending) } : {}),
    count: (counter, amount) => {
      counters[counter] = (counters[counter] ?? 0) + amount
    },
    signal,
    runId: options.runId,
    startedAt,
    reportBytes: (count) => {
      bytes += count
    },
  }

  let shape: Shape = opened.shape
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
    options.fastPath && opened.copyText !== undefined && to.writeCopyText !== undefined && byteSteps.every((transform) => transform.copyText !== undefined)

  const copyFormat = options.copyFormat ?? 'auto'
  if (copyFormat === 'binary' && !useBytes) {
    throw new ConfigError(
      'copyFormat',
      `'binary' needs the byte path, and this pipeline decodes rows (${!options.fastPath ? 'fastPath: false' : 'a source, transform or sink without it'}); leave copyFormat at 'auto'`,
    )
  }

  // Asked only when someone listens. Statistics are a nicety: failing to read them leaves the total unknown, and
  // the run itself reports whatever is wrong with the source.
  const estimate = onProgress && opened.estimate ? await opened.estimate().catch(() => undefined) : undefined
  let rows = 0
  let lastProgress = 0
  // onProgress may be async. Rows do not wait for it (they would move at its pace), but what it returns is never left
  // to reject unhandled, which ends a Node process: its failure fails the run at the next event, as a throw does.
  let progressFailure: { error: unknown } | undefined
  const emit = (event: Progress) => {
    if (progressFailure) throw progressFailure.error
    const returned = onProgress?.(event)
    if (isThenable(returned)) returned.then(undefined, (error: unknown) => void (progressFailure ??= { error }))
  }
  const progress = (step: string, force: boolean) => {
    if (!onProgress) return
    const elapsedMs = performance.now() - started
    // The byte path moves many small chunks: report at most every 100 ms there.
    if (!force && elapsedMs - lastProgress < 100) return
    lastProgress = elapsedMs
    emit(progressEvent({ runId: ctx.runId, rows, bytes, elapsedMs, step, final: false }, estimate))
  }

  const sourceTiming = { ms: 0, rows: 0 }
  const transformTimings = through.map(() => ({ ms: 0, rows: 0 }))
  /** Fused transforms' own times, spread over their timings when the run is done (see below). */
  const fusedGroups: { from: number; own: { ms: number }[]; upstream: { ms: number } }[] = []
  const sourceError = (error: unknown) => classifyError(error, 'source', {}, SourceQueryError)
  const transformError = (transform: Transform) => (error: unknown) => classifyError(error, 'transform', { transform: transform.name }, TransformError)

  let result: SinkResult
  if (useBytes) {
    let chunks: AsyncIterable<Buffer> = measured(opened.copyText!(), sourceTiming, signal, sourceError, noCount)
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
    // Counting rows costs a scan of every byte: done only for progress events (the sink counts what it wrote).
    const counted = async function* (input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of input) {
        rows += countLines(chunk)
        yield chunk
        progress('sink', false)
      }
      progress('sink', true)
    }
    const top = onProgress ? counted(chunks) : (chunks as AsyncGenerator<Buffer>)
    // The binary form goes only where nothing rewrites the bytes but the sink's own run constants.
    const offered = opened.copyBinary
    const noBinary =
      copyFormat === 'text'
        ? "copyFormat: 'text' was asked for"
        : !offered
          ? 'the source has no binary COPY'
          : byteSteps.length > 0
            ? `${byteSteps[0]!.name} rewrites COPY text`
            : !to.writeCopy
              ? 'the sink takes COPY text only'
              : offered.refused
    if (copyFormat === 'binary' && noBinary) throw new ConfigError('copyFormat', `binary COPY is not possible here: ${noBinary}`)
    let binaryTop: AsyncGenerator<Buffer> | undefined
    if (!noBinary && offered) {
      const binaryChunks = measured(offered.chunks(), sourceTiming, signal, sourceError, noCount)
      const countedBinary = async function* (input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
        const tuples = new BinaryTuples()
        for await (const chunk of input) {
          const out = tuples.push(chunk)
          rows = tuples.tuples
          if (out.length) yield out
          progress('sink', false)
        }
        tuples.end()
        progress('sink', true)
      }
      binaryTop = onProgress ? countedBinary(binaryChunks) : binaryChunks
    }
    try {
      if (to.writeCopy) {
        const bytes: CopyBytes = {
          text: top,
          format: copyFormat,
          ...(binaryTop && offered ? { binary: { serverVersion: offered.serverVersion, chunks: binaryTop } } : {}),
          ...(noBinary ? { noBinary } : {}),
        }
        result = await to.writeCopy(bytes, shape, ctx, constants)
      } else {
        result = { ...(await to.writeCopyText!(top, shape, ctx, constants)), copyFormat: 'text', ...(noBinary ? { copyFormatReason: noBinary } : {}) }
      }
    } finally {
      await closeChain(top)
      if (binaryTop) await closeChain(binaryTop)
    }
  } else {
    let stream: AsyncIterable<Batch> = measured(opened.batches(), sourceTiming, signal, sourceError, batchRows)
    for (let index = 0; index < through.length;) {
      const transform = through[index] as Transform
      // Consecutive transforms that only append columns run as one step that builds each row once.
      let end = index
      while (end < through.length && through[end]?.appendColumns) end++
      if (end - index >= 2) {
        const group = through.slice(index, end)
        const own = group.map(() => ({ ms: 0 }))
        const last = transformTimings[end - 1]!
        const fused = fuseAppended(group, shapes.slice(index, end + 1), ctx, own)
        stream = measured(fused(stream), last, signal, transformError(group[0] as Transform), batchRows)
        fusedGroups.push({ from: index, own, upstream: index === 0 ? sourceTiming : transformTimings[index - 1]! })
        index = end
        continue
      }
      stream = measured(transform.apply(stream, shapes[index] as Shape, ctx), transformTimings[index]!, signal, transformError(transform), batchRows)
      index++
    }
    const counted = async function* (input: AsyncIterable<Batch>): AsyncGenerator<Batch> {
      for await (const batch of input) {
        rows += batch.rows.length
        yield batch
        progress('sink', true)
      }
    }
    const top = counted(stream)
    try {
      result = await to.write(top, shape, ctx)
    } finally {
      await closeChain(top)
    }
  }
  bytes = result.bytes
  // A store the sink could not write in its transaction is written now, right after the commit (docs/incremental.md).
  if (pending && !result.checkpointCommitted) await checkpoints!.commit(pending, result, signal)
  const last = transformTimings.at(-1) ?? sourceTiming
  const finishedAt = new Date()
  const durationMs = performance.now() - started
  // Byte-path steps do not count rows (it would cost a scan of every byte): the sink's count is theirs too.
  if (useBytes) for (const timing of [sourceTiming, ...transformTimings]) timing.rows = result.rows
  // A fused group was measured as one step (on its last transform's timing): each of the others gets the upstream's
  // time plus its own and its predecessors' in the group, so the report below gives each its own time.
  for (const { from: first, own, upstream } of fusedGroups) {
    let cumulative = upstream.ms
    own.slice(0, -1).forEach((time, offset) => {
      cumulative += time.ms
      const timing = transformTimings[first + offset]!
      timing.ms = cumulative
      timing.rows = transformTimings[first + own.length - 1]!.rows
    })
  }
  const steps: StepTiming[] = [{ step: 'source', name: from.name, ms: sourceTiming.ms, rows: sourceTiming.rows }]
  through.forEach((transform, index) => {
    const own = transformTimings[index] as { ms: number; rows: number }
    const upstream = index === 0 ? sourceTiming : (transformTimings[index - 1] as { ms: number })
    steps.push({ step: 'transform', name: transform.name, ms: Math.max(0, own.ms - upstream.ms), rows: own.rows })
  })
  steps.push({ step: 'sink', name: to.nameFor?.(shape) ?? to.name, ms: Math.max(0, durationMs - last.ms), rows: result.rows })
  // The last event is awaited: the run ends with it. The sink has committed by now, so a progress callback's failure
  // can no longer fail the run: a run reported failed after its rows landed invites a re-run (or extract()'s retry),
  // which would load them twice. It goes to the logger instead.
  let late = progressFailure
  try {
    await onProgress?.(progressEvent({ runId: ctx.runId, rows: result.rows, bytes, elapsedMs: durationMs, step: 'sink', final: true }, estimate))
  } catch (error) {
    late ??= { error }
  }
  if (late) options.onLateProgressFailure?.(late.error)
  return Object.freeze({
    runId: ctx.runId,
    path: useBytes ? 'copy-bytes' : 'rows',
    ...(useBytes ? { copyFormat: result.copyFormat ?? 'text' } : {}),
    ...(useBytes && result.copyFormatReason ? { copyFormatReason: result.copyFormatReason } : {}),
    source: from.name,
    target: result.target,
    rows: result.rows,
    bytes,
    startedAt,
    finishedAt,
    durationMs,
    rowsPerSecond: perSecond(result.rows, durationMs),
    steps: Object.freeze(steps),
    counters: Object.freeze(counters),
    ...(pending && opened.checkpoint
      ? {
          checkpoint: Object.freeze({
            previous: opened.checkpoint.previous?.value ?? null,
            lower: pending.next.lower,
            value: pending.next.value,
            store: pending.store.name,
          }),
        }
      : {}),
  })
}

/**
 * When the sink is done (or failed), the chain of generators down to the source is closed and its cleanup awaited:
 * a sink that failed has its input destroyed without waiting for that, and the source releases its connection in
 * its cleanup. `extract()` must not settle while a connection of the run is still checked out.
 */
async function closeChain(top: AsyncGenerator<unknown>): Promise<void> {
  await top.return(undefined).catch(() => undefined)
}

const isThenable = (value: unknown): value is PromiseLike<unknown> => typeof (value as { then?: unknown } | null | undefined)?.then === 'function'
