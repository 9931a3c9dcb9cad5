/**
 * Reading and writing PostgreSQL array literals
 * (https://www.postgresql.org/docs/current/arrays.html#ARRAYS-IO).
 */
import { replaceCharsInPieces, replaceEscapesInPieces } from './replace-in-pieces.js'

/** Elements are values or, for a multidimensional array, nested ArrayValues (`unknown` covers both). */
export type ArrayValue = readonly unknown[]

/**
 * Parses `{a,"b c",NULL,{1,2}}` into nested JS arrays, each element passed through `element`.
 * `delimiter` is the element type's `pg_type.typdelim`: `,` for nearly every type, `;` for `box` (its own text has
 * commas). A literal with explicit bounds (`[0:1]={...}`) is returned unchanged, so nothing is lost.
 */
export function parseArrayLiteral(text: string, element: (raw: string) => unknown, delimiter = ','): unknown {
  if (text[0] !== '{') return text
  let position = 0
  const parseLevel = (): unknown[] => {
    const values: unknown[] = []
    position++ // '{'
    if (text[position] === '}') {
      position++
      return values
    }
    for (;;) {
      const char = text[position]
      if (char === '{') {
        values.push(parseLevel())
      } else if (char === '"') {
        const start = ++position
        let escaped = false
        while (position < text.length && text[position] !== '"') {
          if (text[position] === '\\') {
            escaped = true
            position++
          }
          position++
        }
        const raw = text.slice(start, position)
        position++ // closing quote
        // One slice and one replace per element, not a string grown per character (elements can be huge).
        values.push(element(escaped ? replaceEscapesInPieces(raw, unquote) : raw))
      } else {
        // PostgreSQL quotes any element holding a delimiter, brace, quote or backslash; input may escape instead.
        const start = position
        let escaped = false
        while (position < text.length && text[position] !== delimiter && text[position] !== '}') {
          if (text[position] === '\\') {
            escaped = true
            position++
          }
          position++
        }
        const raw = text.slice(start, position)
        values.push(escaped ? element(replaceEscapesInPieces(raw, unquote)) : raw === 'NULL' ? null : element(raw))
      }
      const next = text[position]
      position++
      if (next === '}') return values
      if (next !== delimiter) throw new SyntaxError(`malformed array literal at offset ${position - 1}`)
    }
  }
  return parseLevel()
}

const QUOTED = /[\\"]/g
const quote = (char: string) => `\\${char}`
const unquote = (char: string) => char

/**
 * Writes a JS array as an array literal; `scalar` renders each non-null element as text, which is always quoted (so
 * no element text can be mistaken for a delimiter, a brace or NULL). `delimiter` as for `parseArrayLiteral`.
 */
export function formatArrayLiteral(values: readonly unknown[], scalar: (value: unknown) => string, delimiter = ','): string {
  let out = '{'
  for (let index = 0; index < values.length; index++) {
    if (index > 0) out += delimiter
    const value = values[index]
    if (value === null || value === undefined) out += 'NULL'
    else if (Array.isArray(value)) out += formatArrayLiteral(value, scalar, delimiter)
    else out += `"${replaceCharsInPieces(scalar(value), QUOTED, quote)}"`
  }
  return `${out}}`
}
