import { FlowProducer, Queue, QueueEvents, UnrecoverableError, Worker, type ConnectionOptions, type Job, type RedisOptions } from 'bullmq'
import { z } from 'zod'
import type { Connection } from '../connection/connection.js'
import { parseOptions } from '../connection/options.js'
import { AbortedError, CoordinatorGoneError, DatakitError, QueueUnavailableError, ScaleOutFailedError } from '../errors.js'
import { quoteIdent } from '../pg/identifiers.js'
import { commitRun, committedResult, type CommitResult } from './commit.js'
import { runOptionsSchema, startRun, type RunOptions } from './coordinator.js'
import { blockedRun, runPiece, type PieceProgress, type PieceResult } from './piece.js'
import { planForPiece, type ScaleOutPlan } from './plan.js'
import { abandonRun } from './staging.js'

/** Where the run's jobs go: a BullMQ queue on a Redis server. */
const queueSchema = z.strictObject({
  /** The queue's name; workers of the same name and prefix take its jobs. */
  name: z.string().min(1).default('pg-datakit'),
  /** Redis connection options (ioredis: host, port, password, tls, db, ...). */
  connection: z.custom<RedisOptions>((value) => typeof value === 'object' && value !== null).default({ host: '127.0.0.1', port: 6379 }),
  /** BullMQ's key prefix (default `bull`): separates queues of different deployments on one Redis. */
  prefix: z.string().min(1).optional(),
})

export type QueueOptions = z.input<typeof queueSchema>

const scaleOutSchema = runOptionsSchema.extend({
  queue: queueSchema.default({ name: 'pg-datakit', connection: { host: '127.0.0.1', port: 6379 } }),
  /** Attempts per piece (a worker's error; a killed worker's piece is handed out again as a stalled job, see docs). */
  attempts: z.number().int().min(1).max(100).default(5),
  /** First retry delay of a failed piece, doubling per attempt. */
  backoffMs: z.number().int().min(0).default(1_000),
  /**
   * How long to wait for Redis before failing with QueueUnavailableError: at the start, and when the connection is
   * lost during the run (then a fresh connection is tried for as long again before the run fails).
   */
  connectTimeoutMs: z.number().int().positive().default(5_000),
})

export type ScaleOutOptions = RunOptions & {
  readonly queue?: QueueOptions
  readonly attempts?: number
  readonly backoffMs?: number
  readonly connectTimeoutMs?: number
  readonly signal?: AbortSignal
  /**
   * Pieces done, rows and bytes across every worker, as the workers report them. May be async; a throw or a rejection
   * fails the run (nothing visible) unless it has committed: the last call, after the commit, cannot fail it.
   */
  readonly onProgress?: (progress: ScaleOutProgress) => unknown
  /** Called once the run is planned and its snapshot exported, before any job is enqueued; awaited, a throw fails the run. */
  readonly onPlanned?: (plan: ScaleOutPlan) => unknown
}

export interface ScaleOutProgress {
  readonly runId: string
  readonly pieces: number
  readonly piecesDone: number
  readonly rows: number
  readonly bytes: number
  readonly elapsedMs: number
}

export interface ScaleOutReport extends CommitResult {
  readonly pieces: number
  readonly durationMs: number
}

interface PieceJob {
  readonly plan: ScaleOutPlan
  readonly pieceId: number
}

interface CommitJob {
  readonly plan: ScaleOutPlan
}

/**
 * Runs one extraction across worker processes on BullMQ, exactly once: plans the run and holds its snapshot
 * (`startRun`), enqueues a flow (one child job per piece, a parent job that commits), reports the workers' progress
 * and resolves when the parent job has committed. Workers are `extractionWorker(...)`, in any number of processes.
 *
 * Fails with `QueueUnavailableError` before anything is written when Redis cannot be reached, and with
 * `ScaleOutFailedError` (nothing visible, staging removed) when a piece fails for good.
 *
 * @example
 * const report = await scaleOut(source, warehouse, {
 *   tables: [{ table: 'events', pieces: 32 }],
 *   queue: { name: 'extract', connection: { host: 'redis.internal', port: 6379 } },
 *   onProgress: (p) => console.log(`${p.piecesDone}/${p.pieces} pieces, ${p.rows} rows`),
 * })
 */
export async function scaleOut(source: Connection, warehouse: Connection, options: ScaleOutOptions): Promise<ScaleOutReport> {
  const { signal, onProgress, onPlanned, ...rest } = options
  const parsed = parseOptions(scaleOutSchema, rest)
  const { queue: queueOptions, attempts, backoffMs, connectTimeoutMs, ...runOptions } = parsed
  const started = performance.now()
  // Redis first: when it cannot be reached, nothing has been written anywhere.
  await checkRedis(queueOptions, connectTimeoutMs)
  if (signal?.aborted) throw new AbortedError('scale-out aborted before it started', { step: 'pipeline' })

  const run = await startRun(source, warehouse, runOptions)
  const { plan } = run
  const connection = { ...queueOptions.connection, maxRetriesPerRequest: null } as ConnectionOptions
  const prefix = queueOptions.prefix ? { prefix: queueOptions.prefix } : {}
  let events: QueueEvents | undefined
  let flows: FlowProducer | undefined
  let abort: (() => void) | undefined
  // BullMQ's connections retry for ever (QueueEvents must block): Redis lost mid-run would hang the run, holding the
  // snapshot. The watchdog fails it (QueueUnavailableError) when Redis stays unreachable.
  const watchdog = redisWatchdog(queueOptions, connectTimeoutMs, plan.runId)
  const callbacks = callbackGuard()
  try {
    await onPlanned?.(plan)
    events = new QueueEvents(queueOptions.name, { connection, ...prefix })
    watchdog.watch(events)
    await watchdog.guard(events.waitUntilReady())
    const progress = watchProgress(events, plan, started, onProgress, callbacks)
    flows = new FlowProducer({ connection, ...prefix })
    watchdog.watch(flows)
    const node = await watchdog
      .guard(
        flows.add({
          name: 'commit',
          queueName: queueOptions.name,
          data: { plan } satisfies CommitJob,
          opts: { jobId: commitJobId(plan), attempts: 3, backoff: { type: 'exponential', delay: backoffMs } },
          children: plan.pieces.map((piece) => ({
            name: 'piece',
            queueName: queueOptions.name,
            data: { plan: planForPiece(plan, piece.id), pieceId: piece.id } satisfies PieceJob,
            opts: {
              jobId: pieceJobId(plan, piece.id),
              attempts,
              backoff: { type: 'exponential', delay: backoffMs },
              // A piece failed for good does not fail the parent at once: the parent runs when every piece is settled,
              // sees the failure, and removes the staging area (the other pieces are no longer writing into it).
              ignoreDependencyOnFailure: true,
            },
          })),
        }),
      )
      .catch((error: unknown) => {
        if (error instanceof QueueUnavailableError) throw error
        throw new QueueUnavailableError(`the run's jobs could not be enqueued on Redis: ${(error as Error).message}`, {
          step: 'pipeline',
          context: { run: plan.runId },
          cause: error,
        })
      })
    const finished = node.job.waitUntilFinished(events) as Promise<CommitResult>
    // Raced below: when the run ends another way, its later rejection (the events connection closed) is no one's.
    finished.catch(() => undefined)
    const aborted = new Promise<never>((_, reject) => {
      abort = () => reject(new AbortedError('scale-out aborted; nothing became visible', { step: 'pipeline', context: { run: plan.runId } }))
      if (signal?.aborted) abort()
      else signal?.addEventListener('abort', abort, { once: true })
    })
    const finish = (result: CommitResult): ScaleOutReport => {
      progress.stop()
      progress.final(result)
      return { ...result, pieces: plan.pieces.length, durationMs: performance.now() - started }
    }
    let result: CommitResult
    try {
      result = await Promise.race([finished, aborted, watchdog.failed, callbacks.failed])
    } catch (error) {
      if (error instanceof AbortedError || error instanceof QueueUnavailableError) throw error
      // The commit job may have committed and still failed as a job (stalled past its limit after its COMMIT): the
      // run's record says what became visible, not the job.
      const committed = await committedResult(plan, warehouse).catch(() => undefined)
      if (committed) {
        // Its staging area may be left (the job's last worker died before dropping it).
        await warehouse.query(`drop schema if exists ${quoteIdent(plan.staging)} cascade`).catch(() => undefined)
        return finish(committed)
      }
      // The parent job failed: a piece failed for good, or the commit did. Its message says which.
      const message = error instanceof Error ? error.message : String(error)
      throw new ScaleOutFailedError(`run ${plan.runId} failed, nothing became visible: ${message}`, {
        step: 'pipeline',
        context: { run: plan.runId },
        cause: error,
      })
    } finally {
      progress.stop()
    }
    return finish(result)
  } catch (error) {
    // Whatever ended the run here, its staging area goes (idempotent: the parent job may have done it already).
    await abandonRun(warehouse, plan, 'failed', (error as Error).message).catch(() => undefined)
    // abandonRun changes only a running run: a commit that raced it (its row locked) has committed, and the run's
    // record is final now. A committed run is reported as such, whatever ended the wait for it.
    const committed = await committedResult(plan, warehouse).catch(() => undefined)
    if (committed) return { ...committed, pieces: plan.pieces.length, durationMs: performance.now() - started }
    throw error
  } finally {
    if (abort) signal?.removeEventListener('abort', abort)
    watchdog.stop()
    await run.close()
    // Bounded: closing waits for a connection that may never come back.
    await closeWithin(flows, connectTimeoutMs)
    await closeWithin(events, connectTimeoutMs)
  }
}

async function closeWithin(closable: QueueEvents | FlowProducer | undefined, ms: number): Promise<void> {
  if (!closable) return
  let timer: NodeJS.Timeout | undefined
  const closed = await Promise.race([
    closable.close().then(
      () => true,
      () => false,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ])
  clearTimeout(timer)
  if (!closed) void Promise.resolve(closable.disconnect()).catch(() => undefined)
}

/**
 * Watches the coordinator's Redis connections during a run: on an error or a closed connection it waits `timeoutMs`,
 * then tries a fresh connection (as `checkRedis`, for as long again); when that fails too, `failed` rejects with
 * QueueUnavailableError. Redis back in time (the connections reconnect by themselves) clears the alarm.
 */
function redisWatchdog(queue: z.output<typeof queueSchema>, timeoutMs: number, runId: string) {
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  let fail: (error: Error) => void = () => undefined
  const failed = new Promise<never>((_, reject) => (fail = reject))
  failed.catch(() => undefined)
  const suspect = () => {
    if (timer || stopped) return
    timer = setTimeout(() => {
      checkRedis(queue, timeoutMs).then(
        () => (timer = undefined),
        (error: unknown) => {
          if (stopped) return
          fail(
            new QueueUnavailableError(`Redis was lost during run ${runId} and could not be reached again: ${(error as Error).message}`, {
              step: 'pipeline',
              context: { run: runId, queue: queue.name },
              cause: error,
            }),
          )
        },
      )
    }, timeoutMs)
  }
  return {
    failed,
    watch(emitter: QueueEvents | FlowProducer) {
      // Both are EventEmitters emitting these two events (typed apart by BullMQ).
      const events = emitter as unknown as { on(event: 'error' | 'ioredis:close', listener: () => void): void }
      events.on('error', suspect)
      events.on('ioredis:close', suspect)
    },
    guard<T>(promise: Promise<T>): Promise<T> {
      return Promise.race([promise, failed])
    },
    stop() {
      stopped = true
      clearTimeout(timer)
    },
  }
}

/**
 * The BullMQ job ids of a run: the run id and its start, so a failed run started again under the same run id gets jobs
 * of its own (BullMQ would take a job id it already holds for the old job and add nothing).
 */
export function commitJobId(plan: Pick<ScaleOutPlan, 'runId' | 'startedAt'>): string {
  return `${jobPrefix(plan)}-commit`
}

export function pieceJobId(plan: Pick<ScaleOutPlan, 'runId' | 'startedAt'>, pieceId: number): string {
  return `${jobPrefix(plan)}-p${pieceId}`
}

function jobPrefix(plan: Pick<ScaleOutPlan, 'runId' | 'startedAt'>): string {
  return `${plan.runId}-${Date.parse(plan.startedAt).toString(36)}`
}

/**
 * Calls the caller's callbacks from event listeners: a throw or a rejection is caught (never an uncaught exception or an
 * unhandled rejection in the caller's process) and rejects `failed`, which ends the run; later calls are skipped.
 */
function callbackGuard() {
  let fail!: (error: unknown) => void
  const failed = new Promise<never>((_, reject) => (fail = reject))
  failed.catch(() => undefined)
  let broken = false
  return {
    failed,
    call<T>(callback: ((value: T) => unknown) | undefined, value: T): void {
      if (!callback || broken) return
      const settle = (error: unknown) => {
        broken = true
        fail(error)
      }
      try {
        const returned = callback(value)
        if (returned instanceof Promise) returned.catch(settle)
      } catch (error) {
        settle(error)
      }
    },
  }
}

/** Sums the pieces' progress events (each carries its piece's totals so far) into the run's. */
function watchProgress(
  events: QueueEvents,
  plan: ScaleOutPlan,
  started: number,
  onProgress: ScaleOutOptions['onProgress'],
  callbacks: ReturnType<typeof callbackGuard>,
) {
  const prefix = pieceJobId(plan, 0).slice(0, -1)
  const pieces = new Map<string, { rows: number; bytes: number; done: boolean }>()
  const emit = () => {
    if (!onProgress) return
    let rows = 0
    let bytes = 0
    let done = 0
    for (const piece of pieces.values()) {
      rows += piece.rows
      bytes += piece.bytes
      if (piece.done) done++
    }
    callbacks.call(onProgress, { runId: plan.runId, pieces: plan.pieces.length, piecesDone: done, rows, bytes, elapsedMs: performance.now() - started })
  }
  const onPiece = ({ jobId, data }: { jobId: string; data: unknown }) => {
    if (!jobId.startsWith(prefix) || typeof data !== 'object' || data === null) return
    const { rows, bytes } = data as PieceProgress
    const previous = pieces.get(jobId)
    pieces.set(jobId, { rows: Number(rows) || 0, bytes: Number(bytes) || 0, done: previous?.done ?? false })
    emit()
  }
  const onCompleted = ({ jobId, returnvalue }: { jobId: string; returnvalue: unknown }) => {
    if (!jobId.startsWith(prefix)) return
    const result = (typeof returnvalue === 'string' ? safeJson(returnvalue) : returnvalue) as PieceResult | undefined
    pieces.set(jobId, { rows: Number(result?.rows) || 0, bytes: Number(result?.bytes) || 0, done: true })
    emit()
  }
  events.on('progress', onPiece)
  events.on('completed', onCompleted)
  return {
    stop() {
      events.off('progress', onPiece)
      events.off('completed', onCompleted)
    },
    final(result: CommitResult) {
      // After the commit: nothing can be undone, so a failing last call is the caller's alone (caught, not thrown).
      callbacks.call(onProgress, {
        runId: plan.runId,
        pieces: plan.pieces.length,
        piecesDone: plan.pieces.length,
        rows: result.rows,
        bytes: result.bytes,
        elapsedMs: performance.now() - started,
      })
    },
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** Connects once, without retrying, and pings: Redis down is a typed error now rather than a hang later. */
async function checkRedis(queue: z.output<typeof queueSchema>, timeoutMs: number): Promise<void> {
  const probe = new Queue(queue.name, {
    connection: { ...queue.connection, maxRetriesPerRequest: 1, retryStrategy: () => null, enableOfflineQueue: false, connectTimeout: timeoutMs },
    ...(queue.prefix ? { prefix: queue.prefix } : {}),
  })
  probe.on('error', () => undefined)
  const where = `${queue.connection.host ?? '127.0.0.1'}:${queue.connection.port ?? 6379}`
  try {
    await probe.waitUntilReady()
  } catch (error) {
    // The message names the server, never the connection's password.
    throw new QueueUnavailableError(`Redis at ${where} cannot be reached (${(error as Error).message}); start it, or fix queue.connection`, {
      step: 'connect',
      context: { queue: queue.name },
    })
  } finally {
    await probe.close().catch(() => undefined)
  }
}

const workerSchema = z.strictObject({
  queue: queueSchema.default({ name: 'pg-datakit', connection: { host: '127.0.0.1', port: 6379 } }),
  /** Pieces this process runs at once (each holds one source and one warehouse connection). */
  concurrency: z.number().int().min(1).max(256).default(1),
  /**
   * How long a piece's job stays claimed without its worker renewing it (BullMQ `lockDuration`): a killed worker's
   * piece is handed to another worker about this long after the kill.
   */
  lockDurationMs: z.number().int().min(1_000).default(30_000),
  /** How often stalled jobs (their worker died) are looked for (BullMQ `stalledInterval`). */
  stalledIntervalMs: z.number().int().min(500).default(30_000),
  /** Times a piece may be handed out again after its worker died before it fails (BullMQ `maxStalledCount`). */
  maxStalledCount: z.number().int().min(0).default(3),
  /** Minimum time between two progress reports of a piece. */
  progressIntervalMs: z.number().int().min(10).default(500),
})

export type ExtractionWorkerOptions = z.input<typeof workerSchema>

export interface ExtractionWorker extends AsyncDisposable {
  /** The BullMQ worker, for its events (`active`, `completed`, `failed`, `progress`). */
  readonly worker: Worker<PieceJob | CommitJob, PieceResult | CommitResult>
  /** Stops taking jobs, waits for the running ones, and disconnects from Redis (not from PostgreSQL). */
  close(): Promise<void>
}

/**
 * A worker of scale-out runs: takes the `piece` jobs of a queue (reads the piece in the run's snapshot, writes it into
 * the run's staging area: `runPiece`) and its `commit` jobs (`commitRun`, or removing the staging area when a piece
 * failed for good). Run it in as many processes, on as many machines, as the source can serve.
 *
 * @example
 * const worker = extractionWorker(source, warehouse, { queue: { name: 'extract' }, concurrency: 2 })
 * process.on('SIGTERM', () => worker.close())
 */
export function extractionWorker(source: Connection, warehouse: Connection, options: ExtractionWorkerOptions = {}): ExtractionWorker {
  const parsed = parseOptions(workerSchema, options)
  const processor = async (job: Job<PieceJob | CommitJob>, _token?: string, signal?: AbortSignal): Promise<PieceResult | CommitResult> => {
    if (job.name === 'piece') return pieceJob(job as Job<PieceJob>, signal)
    if (job.name === 'commit') return commitJob(job as Job<CommitJob>)
    throw new UnrecoverableError(`pg-datakit worker: unknown job "${job.name}" on queue ${parsed.queue.name}`)
  }

  async function pieceJob(job: Job<PieceJob>, signal: AbortSignal | undefined): Promise<PieceResult> {
    const { plan, pieceId } = job.data
    try {
      return await runPiece(plan, pieceId, {
        source,
        warehouse,
        ...(signal ? { signal } : {}),
        progressIntervalMs: parsed.progressIntervalMs,
        onProgress: (progress) => job.updateProgress({ rows: progress.rows, bytes: progress.bytes, done: progress.done === true }),
      })
    } catch (error) {
      if (error instanceof CoordinatorGoneError || blockedRun(error)) {
        // No attempt can succeed: remove the staging area now, so nothing is left even if no commit job ever runs.
        await abandonRun(warehouse, plan, 'abandoned', error.message).catch(() => undefined)
        throw new UnrecoverableError(error.message)
      }
      if (error instanceof DatakitError && !error.retryable && !isTransient(error)) throw new UnrecoverableError(error.message)
      throw error
    }
  }

  async function commitJob(job: Job<CommitJob>): Promise<CommitResult> {
    const { plan } = job.data
    // The cause first: pieces that found the staging area gone failed because another piece ended the run.
    const failures = Object.entries(await job.getIgnoredChildrenFailures()).sort(
      ([, a], [, b]) => Number(/staging area of run .* is gone/.test(a)) - Number(/staging area of run .* is gone/.test(b)),
    )
    if (failures.length > 0) {
      const [key, reason] = failures[0] as [string, string]
      const message = `${failures.length} of ${plan.pieces.length} pieces failed for good (first: ${key.split(':').pop()}: ${reason})`
      await abandonRun(warehouse, plan, 'failed', message)
      throw new UnrecoverableError(message)
    }
    try {
      return await commitRun(plan, { warehouse })
    } catch (error) {
      // A refusal that cannot pass (coordinator gone, a piece missing, drift, no merge key) ends the run now; anything
      // else is tried again in a new transaction, and the last failure ends it.
      const hopeless = error instanceof DatakitError && !error.retryable && !isTransient(error)
      const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1)
      if (hopeless || last) await abandonRun(warehouse, plan, 'failed', (error as Error).message).catch(() => undefined)
      if (hopeless) throw new UnrecoverableError((error as Error).message)
      throw error
    }
  }

  const worker = new Worker<PieceJob | CommitJob, PieceResult | CommitResult>(parsed.queue.name, processor, {
    connection: { ...parsed.queue.connection, maxRetriesPerRequest: null } as ConnectionOptions,
    ...(parsed.queue.prefix ? { prefix: parsed.queue.prefix } : {}),
    concurrency: parsed.concurrency,
    lockDuration: parsed.lockDurationMs,
    stalledInterval: parsed.stalledIntervalMs,
    maxStalledCount: parsed.maxStalledCount,
  })
  worker.on('error', () => undefined)
  const close = () => worker.close()
  return Object.freeze({ worker, close, [Symbol.asyncDispose]: close })
}

/** Errors worth another attempt although they do not say "nothing was committed" in general: a piece's is always rolled back. */
function isTransient(error: DatakitError): boolean {
  return [
    'CONNECTION_LOST',
    'CONNECTION_FAILED',
    'POOL_ACQUIRE_TIMEOUT',
    'SERIALIZATION_FAILURE',
    'STATEMENT_TIMEOUT',
    'LOCK_TIMEOUT',
    'SINK_WRITE_FAILED',
    'SOURCE_QUERY_FAILED',
  ].includes(error.code)
}
