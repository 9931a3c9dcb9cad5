import { formatArrayLiteral } from './array-literal.js'
import { toJsonText } from './json-text.js'
import { readColumns } from './row-functions.js'
import type { Column } from './types.js'

/**
 * Writes rows in COPY's text format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2):
 * fields separated by tabs, rows ended by newlines, NULL as `\N`, and backslash, tab, newline and
 * carriage return escaped. Every JS value of pg-datakit's type map is written so that PostgreSQL
 * reads back exactly the value the source had.
 */
export function encodeRows(rows: readonly Record<string, unknown>[], columns: readonly Column[]): string {
  return rowEncoder(columns)(rows)
}

/** An encoder specialised for `columns`; build it once per run and call it per batch. */
export function rowEncoder(columns: readonly Column[]): (rows: readonly Record<string, unknown>[]) => string {
  const read = readColumns(columns)
  const count = columns.length
  const json = columns.map((column) => column.valueFormat === 'json')
  const delimiters = columns.map(arrayDelimiter)
  return (rows) => {
    let out = ''
    for (let row = 0; row < rows.length; row++) {
      const values = read(rows[row] as Record<string, unknown>)
      for (let index = 0; index < count; index++) {
        const value = values[index]
        const text =
          value === null || value === undefined
            ? undefined
            : json[index]
              ? toJsonText(value)
              : typeof value === 'string'
                ? value
                : Array.isArray(value)
                  ? formatArrayLiteral(value, valueToText, delimiters[index])
                  : valueToText(value)
        if (index > 0) out += '\t'
        out += text === undefined ? '\\N' : copyField(text)
      }
      out += '\n'
    }
    return out
  }
}

/**
 * The delimiter an array is written with: its type's. A column keeps its source type, and the source's delimiter,
 * unless it is carried as `text[]` (user-defined element types, docs/types.md), whose delimiter is `,`.
 */
function arrayDelimiter(column: Column): string {
  return column.delimiter !== undefined && column.type !== 'text[]' ? column.delimiter : ','
}

const NEEDS_ESCAPE = /[\\\t\n\r]/
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' }

/** A non-NULL field of COPY's text format: backslash, tab, newline and carriage return escaped. */
export function copyField(text: string): string {
  return NEEDS_ESCAPE.test(text) ? text.replace(/[\\\t\n\r]/g, (char) => ESCAPES[char] as string) : text
}

/** PostgreSQL's text input form of a JS value. */
export function valueToText(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value)
    case 'bigint':
      return value.toString()
    case 'boolean':
      return value ? 't' : 'f'
    case 'object':
      if (value instanceof Date) return value.toISOString()
      if (value instanceof Uint8Array) return `\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`
      if (Array.isArray(value)) return formatArrayLiteral(value, valueToText)
      if (typeof (value as { toPostgres?: unknown }).toPostgres === 'function') return (value as { toPostgres(): string }).toPostgres()
      return toJsonText(value)
    default:
      return String(value)
  }
}
