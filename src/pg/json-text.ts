import { JsonNumber } from '../util/lossless-json.js'

/**
 * JSON text for jsonb values built in JS. Unlike `JSON.stringify`, a `bigint` is written as a JSON number with all
 * its digits (not a string, not rounded), a `JsonNumber` as the number it holds (`1e400`, not `"Infinity"`), and a
 * Buffer as PostgreSQL's `\x` hex text.
 */
export function toJsonText(value: unknown): string {
  // What JSON.parse makes (parseJsonb's values, nearly always) is written by JSON.stringify, natively: the same text.
  if (typeof value === 'object' && value !== null && isPlainJson(value, 0)) return JSON.stringify(value)
  switch (typeof value) {
    case 'bigint':
      return value.toString()
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : JSON.stringify(String(value))
    case 'string':
    case 'boolean':
      return JSON.stringify(value)
    case 'undefined':
      return 'null'
    case 'object': {
      if (value === null) return 'null'
      if (Array.isArray(value)) return `[${value.map(toJsonText).join(',')}]`
      if (value instanceof Uint8Array) return JSON.stringify(`\\x${Buffer.from(value).toString('hex')}`)
      if (value instanceof Date) return JSON.stringify(value.toISOString())
      if (value instanceof JsonNumber) return value.text
      const entries = Object.entries(value as Record<string, unknown>).filter(([, item]) => item !== undefined)
      return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${toJsonText(item)}`).join(',')}}`
    }
    default:
      return JSON.stringify(String(value))
  }
}

/**
 * True when `JSON.stringify` writes `value` exactly as `toJsonText` would: only strings, booleans, null, finite
 * numbers, arrays and plain objects, no deeper than 64 levels (a deeper value takes the general path). Anything with
 * a form of its own (bigint, JsonNumber, Buffer, Date, NaN, ...) is not.
 */
function isPlainJson(value: object, depth: number): boolean {
  if (depth > 64) return false
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) if (!isPlainJsonValue(value[index], depth)) return false
    return true
  }
  const prototype = Object.getPrototypeOf(value) as object | null
  if (prototype !== Object.prototype && prototype !== null) return false
  for (const key in value) if (!isPlainJsonValue((value as Record<string, unknown>)[key], depth)) return false
  return true
}

function isPlainJsonValue(item: unknown, depth: number): boolean {
  switch (typeof item) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return true
    case 'number':
      return Number.isFinite(item)
    case 'object':
      return item === null || isPlainJson(item, depth + 1)
    default:
      return false
  }
}
