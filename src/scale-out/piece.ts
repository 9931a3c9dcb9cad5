import type { Connection } from '../connection/connection.js'
import { classifyError, CoordinatorGoneError, ScaleOutFailedError, SinkWriteError, sqlStateOf } from '../errors.js'
import { copyIn } from '../pg/copy-in.js'
import { copyOutOn } from '../pg/copy-out.js'
import { countLines } from '../pg/copy-line-suffix.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { literal } from '../pg/inline-parameters.js'
import { takeLease } from '../pg/lease.js'
import { PARTITION_COLUMNS, pieceQuery } from '../sources/parallel.js'
import { cancelOnAbort } from '../sinks/cancel-on-abort.js'
import { pieceOf, tableOf, type ScaleOutPlan } from './plan.js'
import { coordinatorGone } from './staging.js'

/** How long a piece's read waits for its table's lock when the source connection sets no `lock_timeout`. */
const PIECE_LOCK_TIMEOUT_MS = 10_000

/** What a piece reports while it runs, and when it is done. */
export interface PieceProgress {
  readonly pieceId: number
  readonly rows: number
  readonly bytes: number
  /** Set on the last report, once the piece is committed. */
  readonly done?: boolean
}

export interface PieceResult extends PieceProgress {
  /** True when an earlier attempt had already committed this piece: nothing was written this time. */
  readonly alreadyDone: boolean
}

export interface RunPieceOptions {
  readonly source: Connection
  readonly warehouse: Connection
  readonly signal?: AbortSignal
  /** Called as rows go in (at most every `progressIntervalMs`) and once at the end. */
  readonly onProgress?: (progress: PieceProgress) => void | Promise<void>
  readonly progressIntervalMs?: number
}

/**
 * Reads one piece of a scale-out run and writes it into the run's staging area: the engine-agnostic unit of work, for
 * a BullMQ worker, a Temporal activity or a pg-boss handler alike (docs/scale-out.md).
 *
 * One warehouse transaction per attempt: it first claims the piece's row in the staging area's `pieces` table, then
 * COPYs the piece's rows (read in the run's snapshot) into the table's staging table, and commits both. A retried
 * piece whose earlier attempt committed finds its row and writes nothing (`alreadyDone`); one whose attempt died
 * (worker killed, connection lost) finds nothing, because that transaction rolled back with its rows; one whose
 * earlier attempt still runs (a stalled job handed out again) waits on that row and then does one or the other.
 *
 * @throws ScaleOutFailedError (`blockedRun`) when the piece's read waited too long behind a statement that needs its
 *   table exclusively (TRUNCATE, a rewriting ALTER TABLE, REFRESH): that statement waits for the run to end, so the
 *   run cannot finish either; the caller abandons the run, and the statement goes on.
 * @throws CoordinatorGoneError when the coordinator holding the snapshot is gone: the run cannot finish; retrying
 *   the piece is pointless (the caller abandons the run, see `abandonRun`).
 */
export async function runPiece(plan: ScaleOutPlan, pieceId: number, options: RunPieceOptions): Promise<PieceResult> {
  const piece = pieceOf(plan, pieceId)
  const table = tableOf(plan, piece.table)
  const context = { run: plan.runId, piece: pieceId, schema: table.plan.schema, table: table.plan.table }
  const interval = options.progressIntervalMs ?? 250
  const signal = options.signal ?? new AbortController().signal
  const pieces = qualifiedName(plan.staging, 'pieces')
  const warehouse = await options.warehouse.acquire(signal)
  const abort = cancelOnAbort(warehouse, signal)
  let broken: Error | undefined
  try {
    await warehouse.query('begin')
    // Checked before anything else: the snapshot import below would fail once the coordinator is gone.
    if (await coordinatorGone(warehouse, plan.staging)) {
      throw new CoordinatorGoneError(`the coordinator of run ${plan.runId} is gone (and with it the snapshot): the run was abandoned; start it again`, {
        step: 'source',
        context,
      })
    }
    const claimed = await warehouse
      .query(`insert into ${pieces} (piece) values ($1) on conflict (piece) do nothing returning piece`, [pieceId])
      .catch((error: unknown) => {
        const state = sqlStateOf(error)
        if (state !== '3F000' && state !== '42P01') throw error
        throw new ScaleOutFailedError(`the staging area of run ${plan.runId} is gone: the run was ended (failed or aborted); start it again`, {
          step: 'sink',
          context,
          cause: error,
        })
      })
    if (claimed.rowCount === 0) {
      const { rows } = await warehouse.query<{ rows: string; bytes: string }>(`select rows::text, bytes::text from ${pieces} where piece = $1`, [pieceId])
      await warehouse.query('rollback')
      const done = { pieceId, rows: Number(rows[0]?.rows ?? 0), bytes: Number(rows[0]?.bytes ?? 0), done: true }
      await options.onProgress?.(done)
      return { ...done, alreadyDone: true }
    }

    const source = await takeLease(options.source, signal, context)
    try {
      source.busy()
      await source.client.query('begin isolation level repeatable read read only')
      await source.client.query(`set transaction snapshot ${literal(plan.snapshot)}`)
      // The coordinator holds ACCESS SHARE on every table of the run, so nothing holds a lock this read waits for: a
      // wait is behind a TRUNCATE / rewriting ALTER / REFRESH queued for the run's end, for ever (the coordinator waits
      // for this piece). A bounded wait (when the connection sets none) ends it: the run fails (blockedRun).
      await source.client.query(`select set_config('lock_timeout', $1, true) where current_setting('lock_timeout') = '0'`, [`${PIECE_LOCK_TIMEOUT_MS}ms`])
      const sourceColumns = table.plan.kind === 'partitioned' ? table.columns.slice(0, -PARTITION_COLUMNS.length) : table.columns
      const statement = `copy (${pieceQuery(piece.piece, sourceColumns, table.plan)}) to stdout`
      let rows = 0
      let bytes = 0
      let reported = Date.now()
      // One progress report in flight at a time, never awaited by the copy; a report that fails is only a lost report.
      let reporting = false
      let lastReport: Promise<void> = Promise.resolve()
      async function* counted(): AsyncGenerator<Buffer> {
        for await (const chunk of copyOutOn(source.client, statement, context, signal)) {
          rows += countLines(chunk)
          bytes += chunk.length
          const now = Date.now()
          if (options.onProgress && now - reported >= interval && !reporting) {
            reported = now
            reporting = true
            lastReport = Promise.resolve(options.onProgress({ pieceId, rows, bytes }))
              .catch(() => undefined)
              .finally(() => (reporting = false))
          }
          yield chunk
        }
      }
      const into = `copy ${qualifiedName(plan.staging, table.target)} (${table.columns.map((column) => quoteIdent(column.name)).join(', ')}) from stdin`
      await copyIn(warehouse, into, counted(), signal)
      await source.client.query('commit')
      source.idle()
      await warehouse.query(`update ${pieces} set rows = $2, bytes = $3, finished_at = clock_timestamp() where piece = $1`, [pieceId, rows, bytes])
      abort.stop()
      await warehouse.query('commit')
      await lastReport
      await options.onProgress?.({ pieceId, rows, bytes, done: true })
      return { pieceId, rows, bytes, done: true, alreadyDone: false }
    } catch (error) {
      throw source.aborted ?? error
    } finally {
      source.release()
    }
  } catch (error) {
    abort.stop()
    await warehouse.query('rollback').catch((rollbackError: unknown) => (broken = rollbackError as Error))
    if (error instanceof CoordinatorGoneError || error instanceof ScaleOutFailedError) throw error
    if (sqlStateOf(error) === '55P03') {
      throw new ScaleOutFailedError(
        `piece ${pieceId} of run ${plan.runId} cannot read ${table.plan.schema}.${table.plan.table}: a statement that needs it exclusively (TRUNCATE, ALTER TABLE, VACUUM FULL, REFRESH) waits for the run to end, and the run's reads wait behind it; the run must fail (nothing visible) so that it can go on`,
        { step: 'source', context, cause: error },
      )
    }
    // The snapshot import fails with "invalid snapshot identifier" once the exporting transaction ended.
    if (sqlStateOf(error) === '22023' && /snapshot/i.test((error as Error).message)) {
      throw new CoordinatorGoneError(`the snapshot of run ${plan.runId} is gone (its coordinator ended): the run was abandoned; start it again`, {
        step: 'source',
        context,
        cause: error,
      })
    }
    // The source's errors come classified (step 'source'); the rest is the warehouse's.
    throw classifyError(error, 'sink', context, SinkWriteError)
  } finally {
    abort.close()
    warehouse.release(broken ?? abort.destroyed)
  }
}

/** True for runPiece's error saying the run is blocked behind a statement that waits for the run (see runPiece). */
export function blockedRun(error: unknown): error is ScaleOutFailedError {
  return error instanceof ScaleOutFailedError && sqlStateOf(error.cause) === '55P03'
}
