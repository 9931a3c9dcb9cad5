import { z } from 'zod'
import type { AppendedColumns, Batch, Row, Shape, Transform } from '../contracts.js'
import { applyAppended } from '../pipeline/appended-columns.js'
import { ConfigError } from '../errors.js'
import { parseOptions } from '../connection/options.js'
import { parseArrayLiteral } from '../pg/array-literal.js'
import { scalarParser } from '../pg/type-parsers.js'
import { readColumns, withColumns } from '../pg/row-functions.js'
import { OID, type Column } from '../pg/types.js'
import { checkNewColumns, selectColumns } from './select-columns.js'
import { whyJsonbCannotHold } from '../pg/jsonb-limits.js'
import { parseJsonLossless } from '../util/lossless-json.js'

const expandArraysSchema = z.strictObject({
  /** Array columns to expand; all array columns when absent (explode takes exactly one). */
  columns: z.array(z.string().min(1)).nonempty().optional(),
  /**
   * - `json` (default): add `<column>_expanded`, the array as a JSON array (jsonb); NULL gives `[]`.
   * - `explode`: one row per element, the element in `<column>_element` and its 1-based position (over all
   *   dimensions, row-major) in `<column>_index`. A row whose array is NULL or empty is kept once, with NULLs there.
   */
  mode: z.enum(['json', 'explode']).default('json'),
})

export type ExpandArraysOptions = z.input<typeof expandArraysSchema>

const isArray = (column: Column) => column.elementOid !== undefined || column.type.endsWith('[]')

/** Arrays arrive as nested JS arrays; a literal with explicit bounds arrives as text and is parsed here. */
function asArray(value: unknown, column: Column): unknown[] {
  if (value === null || value === undefined) return []
  if (Array.isArray(value)) return value
  if (typeof value === 'string') {
    const parsed = parseArrayLiteral(value.replace(/^\[[^=]*\]=/, ''), scalarParser(column.elementOid ?? OID.text), column.delimiter)
    return Array.isArray(parsed) ? parsed : [parsed]
  }
  return [value]
}

const isJsonElement = (column: Column) => column.elementOid === OID.json || column.elementOid === OID.jsonb

/**
 * json/jsonb elements are embedded as JSON values, not as strings holding JSON. An element that is not JSON, or is
 * JSON that jsonb cannot store (a json element with `\u0000`, see jsonb-limits.ts), is embedded as its text.
 */
function parseElement(value: unknown): unknown {
  if (typeof value !== 'string') return value
  try {
    const parsed = parseJsonLossless(value)
    return whyJsonbCannotHold(value, parsed) === undefined ? parsed : value
  } catch {
    return value
  }
}

function deepMap(values: readonly unknown[], fn: (value: unknown) => unknown): unknown[] {
  return values.map((value) => (Array.isArray(value) ? deepMap(value, fn) : fn(value)))
}

function flatten(values: readonly unknown[]): unknown[] {
  return values.flatMap((value) => (Array.isArray(value) ? flatten(value) : [value]))
}

/**
 * Expands array columns of any element type: into a JSON array column, or into one row per element.
 *
 * @example
 * expandArrays({ columns: ['tags'] })                    // adds tags_expanded: ["a","b"]
 * expandArrays({ columns: ['tags'], mode: 'explode' })   // one row per tag: tags_element, tags_index
 */
export function expandArrays(options: ExpandArraysOptions = {}): Transform {
  const { columns, mode } = parseOptions(expandArraysSchema, options, 'expandArrays')
  if (mode === 'explode' && columns && columns.length !== 1) {
    throw new ConfigError('expandArrays.columns', 'explode takes exactly one column (exploding several would multiply rows)')
  }
  const targets = (shape: Shape): Column[] => {
    const picked = selectColumns(shape, columns, isArray, 'expandArrays')
    for (const column of picked) {
      if (!isArray(column)) throw new ConfigError('expandArrays.columns', `"${column.name}" is not an array column (it is ${column.type})`)
    }
    if (mode === 'explode' && picked.length !== 1) {
      throw new ConfigError('expandArrays.columns', `explode takes exactly one array column; the stream has ${picked.length}`)
    }
    return picked
  }

  /** json mode: each picked array as a JSON array. */
  function asJson(shape: Shape): AppendedColumns {
    const picked = targets(shape)
    const json = picked.map(isJsonElement)
    return {
      reads: picked.map((column) => column.name),
      compute(values) {
        for (let index = 0; index < picked.length; index++) {
          const elements = asArray(values[index], picked[index] as Column)
          values[index] = json[index] ? deepMap(elements, parseElement) : elements
        }
        return values
      },
    }
  }

  return Object.freeze({
    name: 'expandArrays',
    shape(input: Shape): Shape {
      const picked = targets(input)
      const added: Column[] =
        mode === 'json'
          ? picked.map((column) => ({ name: `${column.name}_expanded`, type: 'jsonb', typeOid: OID.jsonb, valueFormat: 'json' as const }))
          : picked.flatMap((column) => [
              {
                name: `${column.name}_element`,
                type: column.type.replace(/(\[\])+$/, ''),
                typeOid: column.elementOid ?? OID.text,
                parseOid: column.elementOid ?? OID.text,
              },
              { name: `${column.name}_index`, type: 'integer', typeOid: OID.int4 },
            ])
      checkNewColumns(
        input,
        added.map((column) => column.name),
        'expandArrays',
      )
      // Exploded rows share their source row's key, so the key no longer identifies a row.
      const { primaryKey: _key, ...rest } = input
      return mode === 'explode' ? { ...rest, columns: [...input.columns, ...added] } : { ...input, columns: [...input.columns, ...added] }
    },
    ...(mode === 'json' ? { appendColumns: asJson } : {}),
    async *apply(batches: AsyncIterable<Batch<Row>>, shape: Shape): AsyncGenerator<Batch<Row>> {
      if (mode === 'json') {
        yield* applyAppended(
          batches,
          shape,
          asJson(shape),
          targets(shape).map((column) => `${column.name}_expanded`),
        )
        return
      }
      const picked = targets(shape)
      const arrays = readColumns(picked)
      const column = picked[0] as Column
      const extend = withColumns(shape.columns, [`${column.name}_element`, `${column.name}_index`])
      for await (const batch of batches) {
        const rows: Row[] = []
        for (const row of batch.rows) {
          const elements = flatten(asArray(arrays(row)[0], column))
          if (elements.length === 0) rows.push(extend(row, [null, null]))
          elements.forEach((element, index) => rows.push(extend(row, [element, index + 1])))
        }
        yield { rows }
      }
    },
  })
}
