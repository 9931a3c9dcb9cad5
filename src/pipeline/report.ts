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
