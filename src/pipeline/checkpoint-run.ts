import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Checkpoint, CheckpointKey, CheckpointScope, PendingCheckpoint } from '../checkpoints/checkpoint.js'
import type { OpenContext, OpenedSource, Shape, Sink, SinkResult, Source } from '../contracts.js'
import { CheckpointConflictError, CheckpointWriteError, ConfigError, DatakitError } from '../errors.js'

/** How one run of an incremental source finds, checks and commits its checkpoint. */
export interface CheckpointRun {
  /** Given to the source's `open()`: keys the checkpoint by the source and the sink's target, and reads it. */
  readonly previousCheckpoint: NonNullable<OpenContext['previousCheckpoint']>
  /** The move from the stored checkpoint to the opened run's. */
  pending(opened: OpenedSource): PendingCheckpoint | undefined
  /**
   * Before the sink commits (stores outside its transaction): claims the checkpoint for this run, so that of two
   * runs racing, the loser fails here, with nothing committed.
   */
  beforeCommit(pending: PendingCheckpoint): Promise<void>
  /** After the sink committed without writing the checkpoint itself: writes it (see `commitCheckpoint`). */
  commit(pending: PendingCheckpoint, result: SinkResult, signal: AbortSignal): Promise<void>
}

/**
 * For an incremental source: the checkpoint store (its own, or the sink's) and the rules of the run. Refuses, before
 * anything runs, a sink that would keep only the run's delta (`replace`) or that has no store to offer.
 */
export function checkpointPlan(from: Source<unknown>, to: Sink<unknown>): CheckpointRun | undefined {
  const incremental = from.incremental
  if (!incremental) return undefined
  if (to.mode === 'replace') {
    throw new ConfigError(
      'to.mode',
      `${from.name} delivers only rows that changed since its last run, and ${to.name} keeps only the last run's rows: ` +
        `use mode 'merge' (one row per key) or 'append' (every version)`,
    )
  }
  const store = incremental.checkpoints ?? to.checkpoints
  if (!store) {
    throw new ConfigError(
      'checkpoints',
      `${to.name} keeps no checkpoints: give the incremental source checkpoints (postgresCheckpoints(conn), fileCheckpoints(path) or memoryCheckpoints())`,
    )
  }
  if (!from.open) throw new ConfigError('from', `${from.name} is incremental but cannot be opened (it has no open())`)
  let key: CheckpointKey | undefined
  let stored: Checkpoint | undefined
  let used: Checkpoint | undefined
  let claimed: string | undefined
  return {
    async previousCheckpoint(scope: CheckpointScope, shape: Shape) {
      const target = await to.target?.(shape)
      key = Object.freeze({ source: scope.source, schema: scope.schema, table: scope.table, pipeline: pipelineId(scope, target?.id ?? to.name) })
      stored = await store.read(key)
      // The target was dropped since: its rows are gone, so the run starts from the beginning (the stored
      // checkpoint is still what the write is conditional on).
      used = stored && target && !(await target.exists()) ? undefined : stored
      return used
    },
    pending(opened) {
      if (!opened.checkpoint || !key) return undefined
      return Object.freeze({ key, store, previous: stored, next: opened.checkpoint.next })
    },
    async beforeCommit(pending) {
      // The claim covers what the run started from (nothing, for a first run): if the process dies before the final
      // write, the next run continues from there, as it would have without the claim.
      const claim: Checkpoint = {
        ...(used ?? { ...pending.next, value: null, lower: null, horizon: '0', rows: 0 }),
        runId: `${pending.next.runId}:committing`,
        updatedAt: new Date().toISOString(),
      }
      try {
        await pending.store.write(pending.key, claim, pending.previous?.runId ?? null)
      } catch (error) {
        if (!(error instanceof CheckpointConflictError)) throw error
        throw new CheckpointConflictError(
          `the checkpoint of ${pending.key.schema}.${pending.key.table} in ${pending.store.name} was moved by another run since this one started; nothing was written`,
          { step: 'sink', context: { schema: pending.key.schema, table: pending.key.table }, cause: error },
        )
      }
      claimed = claim.runId
    },
    commit(pending, result, signal) {
      return commitCheckpoint(pending, result, signal, claimed ?? pending.previous?.runId ?? null)
    },
  }
}

/** The explicit name, or a digest of what makes two pipelines from one table different. */
function pipelineId(scope: CheckpointScope, target: string): string {
  if (scope.name !== undefined) return `name:${scope.name}`
  const digest = createHash('sha256')
    .update(JSON.stringify([scope.columns, scope.filter, target]))
    .digest('hex')
    .slice(0, 32)
  return `auto:${digest}`
}

/**
 * Writes the checkpoint to a store outside the sink's transaction, after the sink committed. The pipeline is never
 * run again from here (its rows are committed): a failed write is retried on its own, and what cannot be written is a
 * `CheckpointWriteError` saying exactly that.
 */
async function commitCheckpoint(pending: PendingCheckpoint, result: SinkResult, signal: AbortSignal, expected: string | null, attempts = 4): Promise<void> {
  const next = { ...pending.next, rows: result.rows, updatedAt: new Date().toISOString() }
  for (let attempt = 1; ; attempt++) {
    try {
      await pending.store.write(pending.key, next, expected)
      return
    } catch (error) {
      // A write lost in its commit may have landed: then the store holds this run's checkpoint.
      const landed = attempt > 1 && (await pending.store.read(pending.key).catch(() => undefined))?.runId === next.runId
      if (landed) return
      const retry = attempt < attempts && error instanceof DatakitError && error.retryable && !signal.aborted
      if (!retry) {
        const conflict = error instanceof CheckpointConflictError ? ' (another run moved it at the same moment)' : ''
        throw new CheckpointWriteError(
          `the rows of run ${next.runId} were committed to ${result.target}, but its checkpoint could not be written to ${pending.store.name}${conflict}: ` +
            `${(error as Error).message}. The next run reads the same rows again (merge: no change; append: they land twice)`,
          { step: 'sink', context: { schema: pending.key.schema, table: pending.key.table, target: result.target }, cause: error },
        )
      }
      await sleep(100 * 2 ** attempt)
    }
  }
}
