import type { Checkpoint, CheckpointScope, CheckpointStore, PendingCheckpoint } from './checkpoints/checkpoint.js'
import type { SizeEstimate } from './pg/estimate.js'
import type { Column } from './pg/types.js'

export type Row = Record<string, unknown>

/** How rows were selected, as recorded in `_bronze_extraction_type`. */
export type ExtractionType = 'full' | 'query' | 'incremental' | 'partition' | 'cdc'

/** Where rows come from: recorded by bronze metadata, used by sinks to name their table. */
export interface Origin {
  /** The source database as a URL without password. */
  readonly source: string
  readonly schema: string | undefined
  readonly table: string | undefined
  readonly extractionType: ExtractionType
}

/** The columns a stream carries and where its rows come from; known before the first batch. */
export interface Shape {
  readonly origin: Origin
  readonly columns: readonly Column[]
  /** The source's primary key, when it has one: merge sinks upsert by it. */
  readonly primaryKey?: readonly string[]
}

/** A group of rows moved together: the unit of backpressure, progress and (for sinks) of writing. */
export interface Batch<R = Row> {
  readonly rows: readonly R[]
}

/** What `extract()` hands every step: cancellation and the run's identity. */
export interface RunContext {
  readonly signal: AbortSignal
  readonly runId: string
  /** When the run started; bronze metadata stamps it as `_bronze_loaded_at`. */
  readonly startedAt: Date
  /** Sinks call this as they write, so progress events can report bytes. */
  readonly reportBytes?: (count: number) => void
  /** Steps add to named counters (e.g. `parseJsonb.failed`), reported in `RunReport.counters`. */
  readonly count?: (counter: string, amount: number) => void
  /**
   * For incremental runs: the checkpoint this run moves from `previous` to `next` (an immutable value). A sink
   * whose transaction can hold it (`PendingCheckpoint.store.writeWith` on the sink's own warehouse) writes it there
   * and says so in `SinkResult.checkpointCommitted`; otherwise `extract()` writes it after the sink's commit.
   */
  readonly checkpoint?: PendingCheckpoint
  /**
   * Sinks await this right before they make their rows visible (before COMMIT, or before a memory sink keeps its
   * rows): it fails the run, with nothing written, when another run moved the checkpoint since this one started.
   */
  readonly beforeCommit?: () => Promise<void>
}

/** What an opening source is told: cancellation, and (for incremental sources) how to find their checkpoint. */
export interface OpenContext extends Partial<RunContext> {
  /**
   * Incremental sources call this once they know who they are (database, relation, columns, filter) and their shape:
   * it returns the checkpoint to continue from, or undefined to start from the beginning. `extract()` reads it from
   * the store, keyed by the source and the sink's target; standalone reads start from the beginning.
   */
  readonly previousCheckpoint?: (scope: CheckpointScope, shape: Shape) => Promise<Checkpoint | undefined>
}

/**
 * A source's run, planned once: the shape the sink creates its table from is the shape of the bytes and rows
 * that follow. It holds what the run needs (for an incremental source, a connection in a snapshot) until
 * `close()`, which every path calls (`await using` works too) and which gives every connection back clean.
 */
export interface OpenedSource<R = Row> extends AsyncDisposable {
  readonly shape: Shape
  batches(): AsyncIterable<Batch<R>>
  /** The byte path (see `Source.copyText`), when the source has one. */
  copyText?(): AsyncIterable<Buffer>
  /** The binary byte path: the same rows in COPY's binary format, when the source has it (see `BinaryCopy`). */
  readonly copyBinary?: BinaryCopy
  /**
   * How many rows (and bytes on disk) the run will read, from the catalog's statistics: what progress events make a
   * percent and an ETA of. Absent where no honest estimate exists (a query, a row filter, an incremental delta).
   */
  estimate?(): Promise<SizeEstimate>
  /** For incremental sources: the checkpoint the run will have reached once its rows are committed. */
  readonly checkpoint?: { readonly scope: CheckpointScope; readonly previous: Checkpoint | undefined; readonly next: Checkpoint }
  close(): Promise<void>
}

/**
 * A source of rows. It is an `AsyncIterable` of batches, so `for await (const batch of source)` works on its own;
 * `extract()` calls `batches(ctx)` to pass cancellation. Breaking out of the loop releases its connection.
 */
export interface Source<R = Row> extends AsyncIterable<Batch<R>> {
  readonly name: string
  /**
   * Plans a run once and holds it: `extract()` uses this when present (the shape, the bytes and the checkpoint then
   * come from one plan); `shape()` and `batches()` remain for sources written before it and for direct use.
   */
  open?(ctx?: OpenContext): Promise<OpenedSource<R>>
  /** The columns (with PostgreSQL types) and origin, read from the catalog before any row. */
  shape(): Promise<Shape>
  batches(ctx?: Partial<RunContext>): AsyncIterableIterator<Batch<R>>
  /**
   * Optional byte path: the rows of `shape().columns` as raw COPY text (one row per line, tab-separated,
   * COPY escapes), in chunks cut anywhere. `extract()` uses it when every step of the pipeline has one.
   */
  copyText?(ctx?: Partial<RunContext>): AsyncIterable<Buffer>
  /** Present on incremental sources: where their checkpoints live when not in the sink's store. */
  readonly incremental?: {
    readonly cursorColumn: string
    readonly checkpoints: CheckpointStore | undefined
  }
}

/** A step between a source and a sink: it maps the shape and the batches. */
export interface Transform<In = Row, Out = Row> {
  readonly name: string
  shape(input: Shape): Shape
  apply(batches: AsyncIterable<Batch<In>>, shape: Shape, ctx: RunContext): AsyncIterable<Batch<Out>>
  /**
   * Optional byte path: the same transform done on raw COPY text. Returns a function from a chunk (cut anywhere,
   * so it must not depend on where rows start) to the output chunk.
   */
  copyText?(shape: Shape, ctx: RunContext): (chunk: Buffer) => Buffer
  /**
   * Optional: this transform only appends columns whose value is the same for every row of the run (as
   * `bronzeMetadata` does), and these are the values. A sink that can store run constants without writing
   * them per row (see `Sink.writeCopyText`) is then handed them instead of the bytes.
   */
  constantColumns?(shape: Shape, ctx: RunContext): Row
  /**
   * Optional: this transform keeps every row as it is and appends the columns its shape adds, computed from the
   * values of the columns it `reads` (bronzeMetadata, parseJsonb, expandArrays in json mode). `extract()` runs
   * consecutive such transforms as one step that builds each row once, with the columns of all of them, instead of
   * once per transform; `apply` must do what they describe.
   */
  appendColumns?(shape: Shape, ctx: RunContext): AppendedColumns
}

/** How an `appendColumns` transform computes its columns: from the values of `reads`, in order, the added values. */
export interface AppendedColumns {
  readonly reads: readonly string[]
  compute(values: unknown[]): unknown[]
}

/** Columns with one value for the whole run, trailing the shape's columns. */
export interface RunConstants {
  readonly columns: readonly Column[]
  readonly values: Row
}

/**
 * A source's rows in COPY's binary format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4):
 * the signature and header, one tuple per row, the trailer. Binary forms skip the servers' text formatting and
 * parsing, but they are only the same value where the warehouse column has the source column's very type, read by
 * a server that knows the form; a sink checks that before it takes them (`Sink.writeCopy`).
 */
export interface BinaryCopy {
  /** The source server's `server_version_num`. */
  readonly serverVersion: number
  /** Why these rows must not go binary (a column type without a portable binary form), or undefined. */
  readonly refused: string | undefined
  /** Reads the rows (nothing runs before the first `next()`). */
  chunks(): AsyncIterable<Buffer>
}

/** Which COPY format the byte path uses: chosen per run (`auto`), or asked for. */
export type CopyFormat = 'auto' | 'binary' | 'text'

/**
 * A run's COPY bytes as a byte-path sink is handed them: the text and, when the source has it and no step rewrites
 * the bytes, the binary form. Nothing is read before the sink pulls, and it pulls exactly one of them.
 */
export interface CopyBytes {
  readonly text: AsyncIterable<Buffer>
  /** Absent, with the reason in `noBinary`, when the run cannot go binary whatever the sink says. */
  readonly binary?: Omit<BinaryCopy, 'chunks' | 'refused'> & { readonly chunks: AsyncIterable<Buffer> }
  readonly noBinary?: string
  /** `binary`: fail (ConfigError) rather than fall back to text; `text`: never binary. */
  readonly format: CopyFormat
}

/** What a sink says it did. */
export interface SinkResult {
  readonly rows: number
  /** Bytes the sink wrote (for the PostgreSQL sink, bytes of COPY data). */
  readonly bytes: number
  /** Where the rows went, e.g. `bronze.br_orders`. */
  readonly target: string
  /** True when the sink wrote `ctx.checkpoint` in the transaction that committed the rows. */
  readonly checkpointCommitted?: boolean
  /** On the byte path: the COPY format the rows went in, and why text when it was text. */
  readonly copyFormat?: 'binary' | 'text'
  readonly copyFormatReason?: string
}

/** Where a sink puts a stream of a given shape: its identity (part of a checkpoint's key) and whether it exists. */
export interface SinkTarget {
  /**
   * Stable text naming the target however the sink was configured, e.g. the warehouse database's identity and
   * `bronze.br_orders` (not its URL's text: `localhost` and `127.0.0.1` are one target).
   */
  readonly id: string
  /** False when the target is gone (dropped): an incremental run then starts from the beginning. */
  exists(): Promise<boolean>
}

/** The end of a pipeline. It consumes the batches (pulling sets the pace: that is the backpressure). */
export interface Sink<R = Row> {
  readonly name: string
  /**
   * The sink's name for a stream of this shape, naming the table it really writes where `name` holds a placeholder
   * (`postgres bronze.br_<table> (replace)` until the shape is known): the run report's sink step uses it.
   */
  nameFor?(shape: Shape): string
  /**
   * The sink promises that a `write` that rejects left the target as it was (one transaction, or nothing kept).
   * Only then may `extract()` retry a failed run.
   */
  readonly atomic?: boolean
  /**
   * How a run treats what the target already holds. `replace` keeps only this run's rows, so it is refused for
   * incremental sources (it would keep only the last delta).
   */
  readonly mode?: 'replace' | 'append' | 'merge'
  /** The target a stream of this shape lands in; checkpoints are keyed by it. */
  target?(shape: Shape): Promise<SinkTarget>
  /** The checkpoint store an incremental source uses by default with this sink (its own, written in its transaction). */
  readonly checkpoints?: CheckpointStore
  write(batches: AsyncIterable<Batch<R>>, shape: Shape, ctx: RunContext): Promise<SinkResult>
  /**
   * Optional byte path: writes raw COPY text (chunks cut anywhere) of `shape.columns`, less the trailing
   * `constants` columns when given: those the sink adds itself, once or per row as it can.
   */
  writeCopyText?(chunks: AsyncIterable<Buffer>, shape: Shape, ctx: RunContext, constants?: RunConstants): Promise<SinkResult>
  /**
   * Optional: the byte path in either COPY format. The sink reads `bytes.binary` where every column lands with the
   * type it has in the source, else `bytes.text` (as `writeCopyText` would), and says which in its result.
   */
  writeCopy?(bytes: CopyBytes, shape: Shape, ctx: RunContext, constants?: RunConstants): Promise<SinkResult>
}
