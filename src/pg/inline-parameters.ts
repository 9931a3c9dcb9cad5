import { ConfigError } from '../errors.js'
import { valueToText } from './copy-text-encoder.js'

/**
 * `COPY (query) TO STDOUT` is a utility statement and cannot take bind parameters. This renders each `$n` of a
 * compiled query as an escape-string literal of the value's text form (`E'...'`, with `\` and `'` doubled), which
 * the server types exactly as it types a bind parameter sent by pg (both are `unknown` until context decides).
 * A small lexer replaces only placeholders outside string literals, quoted identifiers, dollar quotes and
 * comments, so SQL text is never changed anywhere else.
 */
export function inlineParameters(sql: string, parameters: readonly unknown[]): string {
  if (parameters.length === 0) return sql
  let out = ''
  let index = 0
  while (index < sql.length) {
    const char = sql[index] as string
    const next = sql[index + 1]
    let end: number
    if (char === "'") {
      end = skipQuoted(sql, index, "'", /[Ee]/.test(sql[index - 1] ?? '') && !/[A-Za-z0-9_$]/.test(sql[index - 2] ?? ''))
    } else if (char === '"') {
      end = skipQuoted(sql, index, '"', false)
    } else if (char === '-' && next === '-') {
      end = sql.indexOf('\n', index)
      end = end === -1 ? sql.length : end + 1
    } else if (char === '/' && next === '*') {
      end = skipBlockComment(sql, index)
    } else if (char === '$' && /[0-9]/.test(next ?? '') && !/[A-Za-z0-9_$]/.test(sql[index - 1] ?? '')) {
      const match = /^\$([0-9]+)/.exec(sql.slice(index)) as RegExpExecArray
      const position = Number(match[1])
      if (position < 1 || position > parameters.length) {
        throw new ConfigError('query', `refers to parameter $${position}, but ${parameters.length} were given`)
      }
      out += literal(parameters[position - 1])
      index += match[0].length
      continue
    } else if (char === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(index))
      if (tag && !/[A-Za-z0-9_]/.test(sql[index - 1] ?? '')) {
        const close = sql.indexOf(tag[0], index + tag[0].length)
        end = close === -1 ? sql.length : close + tag[0].length
      } else {
        end = index + 1
      }
    } else {
      end = index + 1
    }
    out += sql.slice(index, end)
    index = end
  }
  return out
}

/** The literal a value becomes: NULL, or `E'<text form>'`. */
export function literal(value: unknown): string {
  if (value === null || value === undefined) return 'NULL'
  const text = valueToText(value)
  if (text.includes('\0')) throw new ConfigError('parameters', 'a value contains a NUL character, which PostgreSQL text cannot hold')
  return `E'${text.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`
}

function skipQuoted(sql: string, start: number, quote: string, backslashEscapes: boolean): number {
  let index = start + 1
  while (index < sql.length) {
    const char = sql[index]
    if (backslashEscapes && char === '\\') {
      index += 2
      continue
    }
    if (char === quote) {
      if (sql[index + 1] === quote) {
        index += 2
        continue
      }
      return index + 1
    }
    index++
  }
  return sql.length
}

function skipBlockComment(sql: string, start: number): number {
  let depth = 0
  let index = start
  while (index < sql.length) {
    if (sql[index] === '/' && sql[index + 1] === '*') {
      depth++
      index += 2
    } else if (sql[index] === '*' && sql[index + 1] === '/') {
      depth--
      index += 2
      if (depth === 0) return index
    } else {
      index++
    }
  }
  return sql.length
}
