import { z } from 'zod'
import type { Batch, Row, RunContext, Shape, Transform } from '../contracts.js'
import { parseOptions } from '../connection/options.js'
import { readColumns, withColumns } from '../pg/row-functions.js'
import { OID, type Column } from '../pg/types.js'
import { checkNewColumns, selectColumns } from './select-columns.js'
import { parseJsonLossless } from '../util/lossless-json.js'

const parseJsonbSchema = z.strictObject({
  /** Columns holding JSON text; all json and jsonb columns when absent. */
  columns: z.array(z.string().min(1)).nonempty().optional(),
  /** Suffix of the added columns. */
  suffix: z.string().min(1).default('_parsed'),
})

export type ParseJsonbOptions = z.input<typeof parseJsonbSchema>

/** The value a row gets when its JSON text does not parse: the raw text is kept. */
export interface ParseFailure {
  readonly _error: 'parse_failed'
  readonly _raw: string
}

/**
 * Parses JSON text columns into `<column>_parsed` (jsonb). Bad JSON never throws: the row gets
 * `{ _error: 'parse_failed', _raw: <text> }` and the run report counts it under `parseJsonb.failed`.
 * The source column is kept unchanged (the exact text, whatever its numbers' precision).
 *
 * @example
 * await extract({ from, through: [parseJsonb({ columns: ['payload'] })], to })
 */
export function parseJsonb(options: ParseJsonbOptions = {}): Transform {
  const { columns, suffix } = parseOptions(parseJsonbSchema, options, 'parseJsonb')
  const isJson = (column: Column) => column.typeOid === OID.json || column.typeOid === OID.jsonb || column.parseOid === OID.jsonb
  const targets = (shape: Shape) => selectColumns(shape, columns, isJson, 'parseJsonb')

  return Object.freeze({
    name: 'parseJsonb',
    shape(input: Shape): Shape {
      const added = targets(input).map((column) => `${column.name}${suffix}`)
      checkNewColumns(input, added, 'parseJsonb')
      return {
        ...input,
        columns: [...input.columns, ...added.map((name) => ({ name, type: 'jsonb', typeOid: OID.jsonb, valueFormat: 'json' as const }))],
      }
    },
    async *apply(batches: AsyncIterable<Batch<Row>>, shape: Shape, ctx: RunContext): AsyncGenerator<Batch<Row>> {
      const picked = targets(shape)
      const sources = readColumns(picked)
      const extend = withColumns(shape.columns, picked.map((column) => `${column.name}${suffix}`))
      for await (const batch of batches) {
        let failed = 0
        const rows = batch.rows.map((row) => {
          const values = sources(row)
          for (let index = 0; index < values.length; index++) {
            const parsed = parseJson(values[index])
            if (parsed instanceof Failure) failed++
            values[index] = parsed instanceof Failure ? parsed.value : parsed
          }
          return extend(row, values)
        })
        if (failed) ctx.count?.('parseJsonb.failed', failed)
        yield { rows }
      }
    },
  })
}

class Failure {
  constructor(readonly value: ParseFailure) {}
}

function parseJson(value: unknown): unknown {
  if (value === null || value === undefined) return null
  if (typeof value !== 'string') return value
  try {
    return parseJsonLossless(value)
  } catch {
    return new Failure({ _error: 'parse_failed', _raw: value })
  }
}
