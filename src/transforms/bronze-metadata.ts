import type { Batch, Row, RunContext, Shape, Transform } from '../contracts.js'
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

/** The metadata values of one run: the same for every row it loads. */
export function bronzeValues(shape: Shape, ctx: Pick<RunContext, 'startedAt'>): Row {
  return {
    _bronze_loaded_at: ctx.startedAt.toISOString(),
    _bronze_source: redact(shape.origin.source),
    _bronze_schema: shape.origin.schema ?? null,
    _bronze_table: shape.origin.table ?? null,
    _bronze_extraction_type: shape.origin.extractionType,
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
      const clash = input.columns.find((column) => BRONZE_COLUMNS.some((bronze) => bronze.name === column.name))
      if (clash) {
        throw new ConfigError('bronzeMetadata', `the source already has a column "${clash.name}"; rename it in the source query`)
      }
      return { origin: input.origin, columns: [...input.columns, ...BRONZE_COLUMNS] }
    },
    async *apply(batches: AsyncIterable<Batch<Row>>, shape: Shape, ctx: RunContext): AsyncGenerator<Batch<Row>> {
      const extend = extendRows(shape.columns, bronzeValues(shape, ctx))
      for await (const batch of batches) {
        yield { rows: batch.rows.map(extend) }
      }
    },
    constantColumns: (shape: Shape, ctx: RunContext): Row => bronzeValues(shape, ctx),
    copyText(shape: Shape, ctx: RunContext): (chunk: Buffer) => Buffer {
      // The same values, encoded once as COPY fields and appended to every line.
      const fields = encodeRows([bronzeValues(shape, ctx)], BRONZE_COLUMNS).slice(0, -1)
      return appendToLines(Buffer.from(shape.columns.length > 0 ? `\t${fields}` : fields))
    },
  })
}
