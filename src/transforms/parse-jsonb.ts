import { z } from 'zod'
import type { Batch, Row, RunContext, Shape, Transform } from '../contracts.js'
import { parseOptions } from '../connection/options.js'
import { readColumns, withColumns } from '../pg/row-functions.js'
import { OID, type Column } from '../pg/types.js'
import { checkNewColumns, selectColumns } from './select-columns.js'
import { whyJsonbCannotHold } from '../pg/jsonb-limits.js'
import { parseJsonLossless } from '../util/lossless-json.js'

const parseJsonbSchema = z.strictObject({
  /** Columns holding JSON text; all json and jsonb columns when absent. */
  columns: z.array(z.string().min(1)).nonempty().optional(),
  /** Suffix of the added columns. */
  suffix: z.string().min(1).default('_parsed'),
})

export type ParseJsonbOptions = z.input<typeof parseJsonbSchema>

/**
 * The value a row gets when its text gives no jsonb: the raw text is kept. `parse_failed`: it is not JSON.
 * `jsonb_unsupported`: it is JSON that jsonb cannot store (a `\u0000` or a lone surrogate in a string, a number beyond
 * `numeric`), and `_reason` says which.
 */
export type ParseFailure =
  | { readonly _error: 'parse_failed'; readonly _raw: string }
  | { readonly _error: 'jsonb_unsupported'; readonly _reason: string; readonly _raw: string }

/**
 * Parses JSON text columns into `<column>_parsed` (jsonb). Neither bad JSON nor JSON that jsonb cannot store ever
 * throws: the row gets `{ _error: 'parse_failed', _raw: <text> }` (counted in the run report under
 * `parseJsonb.failed`) or `{ _error: 'jsonb_unsupported', _reason, _raw }` (under `parseJsonb.unsupported`).
 * Numbers are kept exactly (big integers as bigint, numbers beyond a double as JsonNumber). The source column is kept
 * unchanged (the exact text, whatever its numbers' precision).
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
        let unsupported = 0
        const rows = batch.rows.map((row) => {
          const values = sources(row)
          for (let index = 0; index < values.length; index++) {
            const parsed = parseJson(values[index])
            if (parsed instanceof Failure) {
              if (parsed.value._error === 'parse_failed') failed++
              else unsupported++
            }
            values[index] = parsed instanceof Failure ? parsed.value : parsed
          }
          return extend(row, values)
        })
        if (failed) ctx.count?.('parseJsonb.failed', failed)
        if (unsupported) ctx.count?.('parseJsonb.unsupported', unsupported)
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
  let parsed: unknown
  try {
    parsed = parseJsonLossless(value)
  } catch {
    return new Failure({ _error: 'parse_failed', _raw: value })
  }
  const reason = whyJsonbCannotHold(value, parsed)
  return reason === undefined ? parsed : new Failure({ _error: 'jsonb_unsupported', _reason: reason, _raw: value })
}
