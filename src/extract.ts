import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import { parseOptions } from './connection/options.js'
import type { CopyFormat, Sink, Source, Transform } from './contracts.js'
import { AbortedError, ConfigError, DatakitError } from './errors.js'
import { silentLogger, type Logger } from './logger.js'
import { backoffDelay, isRetryable, retryOptionsSchema, waitBeforeRetry, type RetryOptions } from './pipeline/retry.js'
import type { Progress, RunReport } from './pipeline/report.js'
import { runOnce } from './pipeline/run-once.js'

export type { Progress, RunReport, StepTiming } from './pipeline/report.js'

/**
 * A pipeline without transforms: the sink takes the source's rows, so `memorySink<Wrong>()` does not compile, and an
 * inline `memorySink()` gets the source's row type.
 */
export type TypedPipeline<R> = Omit<ExtractOptions, 'from' | 'to'> & { readonly from: Source<R>; readonly to: Sink<NoInfer<R>> }

export interface ExtractOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any row type: TypedPipeline and extract()'s overloads check them
  readonly from: Source<any>
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- transforms change row types from step to step
  readonly through?: readonly Transform<any, any>[]
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any row type: TypedPipeline and extract()'s overloads check them
  readonly to: Sink<any>
  readonly signal?: AbortSignal
  /**
   * Called with each progress event. May be async: rows do not wait for it, except for the final event, which the run
   * awaits. A throw or a rejection fails the run (at the next event) until the sink has committed; after that (the
   * final event) it is logged as a warning and the run succeeds, since its rows have landed.
   */
  readonly onProgress?: (progress: Progress) => unknown
  /** Identifies the run in reports, errors, logs and metadata; a random UUID when absent. */
  readonly runId?: string
  /**
   * Let COPY bytes flow from source to sink undecoded when every step supports it (default true).
   * `false` forces decoded rows, e.g. to compare both paths.
   */
  readonly fastPath?: boolean
  /**
   * The COPY format of the byte path. `auto` (default): binary where every column lands in the warehouse as its own
   * type and the warehouse's server reads the source's binary forms, text elsewhere (`report.copyFormat` says which,
   * `report.copyFormatReason` why text). `text`: always text. `binary`: a ConfigError, before anything is written,
   * where binary is not possible.
   */
  readonly copyFormat?: CopyFormat
  /**
   * Run the whole pipeline again after an error that says nothing was committed (docs/errors.md), with
   * backoff and jitter; only with a sink that declares itself atomic. Default: 3 attempts. `false`: one attempt.
   */
  readonly retry?: RetryOptions | false
  /** Structured logs of starts, retries, failures and finishes (pino, console, ...). */
  readonly logger?: Logger
}

const flagsSchema = z.object({
  fastPath: z.boolean().default(true),
  copyFormat: z.enum(['auto', 'binary', 'text']).default('auto'),
  runId: z.string().min(1).optional(),
})

/**
 * Runs a pipeline: the source's batches flow through each transform into the sink, pulled by the sink
 * (so the slowest step sets the pace and memory stays at a few batches). Resolves with a run report;
 * rejects with a typed error, after every connection the run took is released.
 *
 * @example
 * const report = await extract({
 *   from: copySource(source, { table: 'orders' }),
 *   through: [bronzeMetadata()],
 *   to: postgresSink(warehouse, { mode: 'replace' }),
 *   onProgress: (p) => console.log(p.rows, p.rowsPerSecond),
 * })
 */
export function extract<R>(options: TypedPipeline<R>): Promise<RunReport>
/** With transforms, which may reshape the rows, the sink's row type is not checked against the source's. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- transforms of any row types, as ExtractOptions takes
export function extract(options: ExtractOptions & { readonly through: readonly Transform<any, any>[] }): Promise<RunReport>
export async function extract(options: ExtractOptions): Promise<RunReport> {
  checkPipeline(options)
  const flags = parseOptions(flagsSchema, { fastPath: options.fastPath, copyFormat: options.copyFormat, runId: options.runId })
  const retry = parseOptions(retryOptionsSchema, options.retry === false ? { attempts: 1 } : (options.retry ?? {}), 'retry')
  const logger = options.logger ?? silentLogger
  const signal = options.signal ?? new AbortController().signal
  const runId = flags.runId ?? randomUUID()
  const fields = { runId, source: options.from.name, sink: options.to.name }
  const atomic = options.to.atomic === true

  for (let attempt = 1; ; attempt++) {
    if (signal.aborted) throw new AbortedError('extraction aborted before it started', { step: 'pipeline' })
    logger.info({ ...fields, attempt }, 'extraction started')
    try {
      const report = await runOnce({
        from: options.from,
        through: options.through ?? [],
        to: options.to,
        signal,
        onProgress: options.onProgress,
        onLateProgressFailure: (error) =>
          logger.warn(
            { ...fields, attempt, error: error instanceof Error ? error.message : String(error) },
            'onProgress failed after the rows were committed; the run succeeded',
          ),
        runId,
        startedAt: new Date(),
        fastPath: flags.fastPath,
        copyFormat: flags.copyFormat,
      })
      logger.info(
        // The sink's step names the table it wrote (`nameFor`), where `options.to.name` may hold a placeholder.
        {
          ...fields,
          sink: report.steps.find((step) => step.step === 'sink')?.name ?? fields.sink,
          attempt,
          path: report.path,
          copyFormat: report.copyFormat,
          target: report.target,
          rows: report.rows,
          bytes: report.bytes,
          durationMs: Math.round(report.durationMs),
        },
        'extraction finished',
      )
      return report
    } catch (error) {
      const code = error instanceof DatakitError ? error.code : 'UNKNOWN'
      const failure = { ...fields, attempt, code, step: error instanceof DatakitError ? error.step : undefined, error: (error as Error).message }
      if (attempt < retry.attempts && isRetryable(error, atomic) && !signal.aborted) {
        const delayMs = backoffDelay(attempt, retry)
        logger.warn({ ...failure, delayMs }, 'extraction failed; nothing was committed, retrying')
        await waitBeforeRetry(delayMs, signal)
        continue
      }
      logger.error(failure, 'extraction failed')
      throw error
    }
  }
}

/** The parts of a pipeline, checked before anything runs: a JavaScript caller gets a ConfigError, not a TypeError. */
function checkPipeline(options: ExtractOptions): void {
  const given = options as Partial<ExtractOptions> | undefined
  if (typeof given !== 'object' || given === null) throw new ConfigError('options', 'extract() takes { from, through?, to }')
  const from = given.from as Partial<Source> | undefined
  if (typeof from?.batches !== 'function' && typeof from?.open !== 'function') {
    throw new ConfigError('from', 'must be a source, e.g. tableSource(connection, { table }) or copySource(...)')
  }
  if (typeof (given.to as Partial<Sink> | undefined)?.write !== 'function') {
    throw new ConfigError('to', 'must be a sink, e.g. postgresSink(warehouse, { mode }) or memorySink()')
  }
  if (given.through !== undefined) {
    if (!Array.isArray(given.through)) throw new ConfigError('through', 'must be an array of transforms, e.g. [bronzeMetadata()]')
    given.through.forEach((transform: Partial<Transform> | undefined, index) => {
      if (typeof transform?.apply !== 'function' || typeof transform.shape !== 'function') {
        throw new ConfigError(`through.${index}`, 'must be a transform, e.g. bronzeMetadata() or parseJsonb()')
      }
    })
  }
}
