import { z } from 'zod'
import type { AppendedColumns, Batch, Row, RunContext, Shape, Transform } from '../contracts.js'
import { applyAppended } from '../pipeline/appended-columns.js'
import { parseOptions } from '../connection/options.js'
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
  { readonly _error: 'parse_failed'; readonly _raw: string } | { readonly _error: 'jsonb_unsupported'; readonly _reason: string; readonly _raw: string }

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
  const added = (shape: Shape) => targets(shape).map((column) => `${column.name}${suffix}`)

  /** Each picked column's text parsed; failures kept as values and counted. */
  function appendColumns(shape: Shape, ctx: RunContext): AppendedColumns {
    return {
      reads: targets(shape).map((column) => column.name),
      compute(values) {
        for (let index = 0; index < values.length; index++) {
          const parsed = parseJson(values[index])
          if (parsed instanceof Failure) {
            ctx.count?.(parsed.value._error === 'parse_failed' ? 'parseJsonb.failed' : 'parseJsonb.unsupported', 1)
            values[index] = parsed.value
          } else {
            values[index] = parsed
          }
        }
        return values
      },
    }
  }

  return Object.freeze({
    name: 'parseJsonb',
    shape(input: Shape): Shape {
      const names = added(input)
      checkNewColumns(input, names, 'parseJsonb')
      return {
        ...input,
        columns: [...input.columns, ...names.map((name) => ({ name, type: 'jsonb', typeOid: OID.jsonb, valueFormat: 'json' as const }))],
      }
    },
    appendColumns,
    apply(batches: AsyncIterable<Batch<Row>>, shape: Shape, ctx: RunContext): AsyncIterable<Batch<Row>> {
      return applyAppended(batches, shape, appendColumns(shape, ctx), added(shape))
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
