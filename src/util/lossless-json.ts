import { randomUUID } from 'node:crypto'

/**
 * `JSON.parse`, except that an integer too large for a JS number (beyond ±2^53 - 1) becomes a `bigint` with every
 * digit, as int8 columns do, instead of being rounded. Other numbers are JS numbers as usual: a decimal with more than
 * ~15 significant digits is rounded (no JS type holds it). Throws SyntaxError on bad JSON, like `JSON.parse`.
 *
 * The common case costs one `JSON.parse` and a regular-expression test: only a text with a run of 16 or more digits
 * is scanned for large integers, and then parsed a second time with those written as marked strings.
 */
export function parseJsonLossless(text: string): unknown {
  const parsed = JSON.parse(text) as unknown
  if (!LONG_DIGITS.test(text)) return parsed
  const large = largeIntegers(text)
  if (large.length === 0) return parsed
  // A marker no JSON text holds: a fresh UUID behind a NUL (escaped in the text, a raw control character is not JSON).
  const id = randomUUID()
  const marker = `\u0000${id}:`
  let marked = ''
  let from = 0
  for (const [start, end] of large) {
    marked += `${text.slice(from, start)}"\\u0000${id}:${text.slice(start, end)}"`
    from = end
  }
  marked += text.slice(from)
  return JSON.parse(marked, (_key, value: unknown) =>
    typeof value === 'string' && value.startsWith(marker) ? BigInt(value.slice(marker.length)) : value,
  ) as unknown
}

const LONG_DIGITS = /\d{16}/
const MAX = BigInt(Number.MAX_SAFE_INTEGER)

/** [start, end) of each integer token outside strings whose value a JS number cannot hold, in a valid JSON text. */
function largeIntegers(text: string): [number, number][] {
  const found: [number, number][] = []
  let index = 0
  while (index < text.length) {
    const code = text.charCodeAt(index)
    if (code === QUOTE) {
      index++
      while (index < text.length && text.charCodeAt(index) !== QUOTE) index += text.charCodeAt(index) === BACKSLASH ? 2 : 1
      index++
    } else if (code === MINUS || (code >= ZERO && code <= NINE)) {
      const start = index
      let integer = true
      while (index < text.length && NUMBER_CHARS.has(text.charCodeAt(index))) {
        if (!DIGIT_OR_MINUS.has(text.charCodeAt(index))) integer = false
        index++
      }
      const digits = text.charCodeAt(start) === MINUS ? index - start - 1 : index - start
      if (integer && digits >= 16) {
        const value = BigInt(text.slice(start, index))
        if (value > MAX || value < -MAX) found.push([start, index])
      }
    } else {
      index++
    }
  }
  return found
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const MINUS = 0x2d
const ZERO = 0x30
const NINE = 0x39
const NUMBER_CHARS = new Set([...'-+.eE0123456789'].map((char) => char.charCodeAt(0)))
const DIGIT_OR_MINUS = new Set([...'-0123456789'].map((char) => char.charCodeAt(0)))
