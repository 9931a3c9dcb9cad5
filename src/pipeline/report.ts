/**
 * A progress event, sent after each batch reaches the sink's input (at most every 100 ms on the byte path), and once
 * more, with `final: true`, when the sink has committed: that last event carries the run's exact rows and bytes.
 */
export interface Progress {
  readonly runId: string
  readonly rows: number
  /** Bytes the sink has written so far (COPY bytes for the PostgreSQL sink). */
  readonly bytes: number
  readonly elapsedMs: number
  readonly rowsPerSecond: number
  /** The step the pipeline is in: `source`, a transform's name, or `sink`. */
  readonly step: string
  /**
   * The rows the run is expected to read, estimated from the catalog (`pg_class.reltuples` scaled to the relation's
   * current size, summed over a plan's pieces), never below `rows`. Absent where no honest estimate exists: a query
   * source, a row filter, an incremental delta, a table never analyzed (`reltuples = -1`).
   */
  readonly totalRows?: number
  /** The size on disk (heap and TOAST) of the relations read, when known: for scale, not comparable with `bytes`. */
  readonly relationBytes?: number
  /** `rows / totalRows` in percent (one decimal, below 100 until the final event); only with `totalRows`. */
  readonly percent?: number
  /** Seconds left at the current rate; only with `totalRows` and a rate. */
  readonly etaSeconds?: number
  /** True on the last event of a successful run, sent after the sink committed. */
  readonly final: boolean
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
  /**
   * On the byte path: `binary` when the rows went `COPY TO (FORMAT binary)` into `COPY FROM (FORMAT binary)`, `text`
   * otherwise, with the reason in `copyFormatReason` (a column the warehouse holds as another type, servers of
   * different major versions, a step that rewrites COPY text, `copyFormat: 'text'`, ...).
   */
  readonly copyFormat?: 'binary' | 'text'
  readonly copyFormatReason?: string
  readonly source: string
  readonly target: string
  readonly rows: number
  readonly bytes: number
  readonly startedAt: Date
  readonly finishedAt: Date
  readonly durationMs: number
  readonly rowsPerSecond: number
  readonly steps: readonly StepTiming[]
  /** What steps counted, e.g. `{ 'parseJsonb.failed': 3 }`. */
  readonly counters: Readonly<Record<string, number>>
  /** Incremental runs: the range read, `(lower, value]`, and the checkpoint now stored (`value`). */
  readonly checkpoint?: {
    readonly previous: string | null
    readonly lower: string | null
    readonly value: string | null
    readonly store: string
  }
}
