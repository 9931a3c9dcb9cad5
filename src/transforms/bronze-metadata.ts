import type { AppendedColumns, Batch, Row, RunContext, Shape, Transform } from '../contracts.js'
import { ConfigError } from '../errors.js'
import { redact } from '../connection/redact.js'
import { appendToLines } from '../pg/copy-line-suffix.js'
import { encodeRows } from '../pg/copy-text-encoder.js'
import { extendRows } from '../pg/row-functions.js'
import type { Column } from '../pg/types.js'

/** The columns bronze metadata adds, in order. */
export const BRONZE_COLUMNS: readonly Column[] = Object.freeze([
  { name: '_bronze_loaded_at', type: 'timestamp with time zone', typeOid: 1184 },
  { name: '_bronze_source', type: 'text', typeOid: 25 },
  { name: '_bronze_schema', type: 'text', typeOid: 25 },
  { name: '_bronze_table', type: 'text', typeOid: 25 },
  { name: '_bronze_extraction_type', type: 'text', typeOid: 25 },
])

/** Added for incremental sources: the checkpoint (cursor upper bound) of the run that loaded the row. */
export const CHECKPOINT_COLUMN: Column = Object.freeze({ name: '_bronze_checkpoint', type: 'text', typeOid: 25 })

function bronzeColumns(shape: Shape): readonly Column[] {
  return shape.origin.extractionType === 'incremental' ? [...BRONZE_COLUMNS, CHECKPOINT_COLUMN] : BRONZE_COLUMNS
}

/**
 * The metadata values of one run: the same for every row it loads. An incremental source proposes its checkpoint
 * when it starts reading, so these are taken when the first batch arrives.
 */
export function bronzeValues(shape: Shape, ctx: Pick<RunContext, 'startedAt' | 'checkpoint'>): Row {
  return {
    _bronze_loaded_at: ctx.startedAt.toISOString(),
    _bronze_source: redact(shape.origin.source),
    _bronze_schema: shape.origin.schema ?? null,
    _bronze_table: shape.origin.table ?? null,
    _bronze_extraction_type: shape.origin.extractionType,
    ...(shape.origin.extractionType === 'incremental' ? { _bronze_checkpoint: ctx.checkpoint?.next?.value ?? null } : {}),
  }
}

/**
 * Adds the bronze columns to every row: `_bronze_loaded_at` (the run's start, identical for all its rows),
 * `_bronze_source` (the source URL without password), `_bronze_schema`, `_bronze_table` and
 * `_bronze_extraction_type`.
 *
 * @example
 * await extract({ from: tableSource(source, { table: 'orders' }), through: [bronzeMetadata()], to: postgresSink(warehouse) })
 */
export function bronzeMetadata(): Transform {
  return Object.freeze({
    name: 'bronzeMetadata',
    shape(input: Shape): Shape {
      const added = bronzeColumns(input)
      const clash = input.columns.find((column) => added.some((bronze) => bronze.name === column.name))
      if (clash) {
        throw new ConfigError('bronzeMetadata', `the source already has a column "${clash.name}"; rename it in the source query`)
      }
      return { ...input, columns: [...input.columns, ...added] }
    },
    async *apply(batches: AsyncIterable<Batch<Row>>, shape: Shape, ctx: RunContext): AsyncGenerator<Batch<Row>> {
      let extend: ((row: Row) => Row) | undefined
      for await (const batch of batches) {
        extend ??= extendRows(shape.columns, bronzeValues(shape, ctx))
        yield { rows: batch.rows.map(extend) }
      }
    },
    constantColumns: (shape: Shape, ctx: RunContext): Row => bronzeValues(shape, ctx),
    appendColumns(shape: Shape, ctx: RunContext): AppendedColumns {
      let values: unknown[] | undefined
      // Taken at the first row, as apply takes them at the first batch.
      return { reads: [], compute: () => (values ??= Object.values(bronzeValues(shape, ctx))) }
    },
    copyText(shape: Shape, ctx: RunContext): (chunk: Buffer) => Buffer {
      // The same values, encoded once as COPY fields and appended to every line.
      const fields = encodeRows([bronzeValues(shape, ctx)], bronzeColumns(shape)).slice(0, -1)
      return appendToLines(Buffer.from(shape.columns.length > 0 ? `\t${fields}` : fields))
    },
  })
}
