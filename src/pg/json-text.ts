import { JsonNumber } from '../util/lossless-json.js'

/**
 * JSON text for jsonb values built in JS. Unlike `JSON.stringify`, a `bigint` is written as a JSON number with all
 * its digits (not a string, not rounded), a `JsonNumber` as the number it holds (`1e400`, not `"Infinity"`), and a
 * Buffer as PostgreSQL's `\x` hex text.
 */
export function toJsonText(value: unknown): string {
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
