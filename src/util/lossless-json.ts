import { randomUUID } from 'node:crypto'

/**
 * A JSON number a JS number cannot hold: beyond ±1.8e308 (`JSON.parse` gives `Infinity`) or below the smallest
 * normal double, 2.2e-308, where doubles lose digits (`1e-400` gives `0`). It keeps the number's JSON text, which
 * `toJsonText` writes back as that number, so it lands in jsonb exactly. `Number(x)` gives the nearest double.
 */
export class JsonNumber {
  constructor(readonly text: string) {
    // Written into JSON as it is: it must be a JSON number and nothing else.
    if (!JSON_NUMBER.test(text)) throw new TypeError(`not a JSON number: ${text.slice(0, 40)}`)
    Object.freeze(this)
  }

  valueOf(): number {
    return Number(this.text)
  }

  toString(): string {
    return this.text
  }

  /** `JSON.stringify` has no way to write a number's own text: it gets the text as a string, nothing lost. */
  toJSON(): string {
    return this.text
  }
}

/**
 * `JSON.parse`, except that numbers a JS number cannot hold are kept exactly: an integer beyond ±2^53 - 1 becomes a
 * `bigint` with every digit, as int8 columns do, and a number that overflows or underflows a double becomes a
 * `JsonNumber` holding its text. Other numbers are JS numbers as usual: a decimal with more than ~15 significant
 * digits is rounded (no JS type holds it). Throws SyntaxError on bad JSON, like `JSON.parse`.
 *
 * The common case costs one `JSON.parse` and a regular-expression test: only a text with a run of 16 or more digits
 * or an exponent of 3 or more digits is scanned for such numbers, and then parsed a second time with those written
 * as marked strings.
 */
export function parseJsonLossless(text: string): unknown {
  const parsed = JSON.parse(text) as unknown
  if (!mayHoldInexactNumbers(text)) return parsed
  const inexact = inexactNumbers(text)
  if (inexact.length === 0) return parsed
  // A marker no JSON text holds: a fresh UUID behind a NUL (escaped in the text, a raw control character is not JSON).
  const id = randomUUID()
  const marker = `\u0000${id}:`
  let marked = ''
  let from = 0
  for (const [start, end] of inexact) {
    marked += `${text.slice(from, start)}"\\u0000${id}:${text.slice(start, end)}"`
    from = end
  }
  marked += text.slice(from)
  return JSON.parse(marked, (_key, value: unknown) => {
    if (typeof value !== 'string' || !value.startsWith(marker)) return value
    const number = value.slice(marker.length)
    return INTEGER.test(number) ? BigInt(number) : new JsonNumber(number)
  }) as unknown
}

/** False when no number of `text` can be beyond a JS number: then `JSON.parse` is exact (but for decimals' rounding). */
export function mayHoldInexactNumbers(text: string): boolean {
  return MAY_BE_INEXACT.test(text)
}

// An integer part of 16 or more digits (beyond 2^53, or beyond a double), `0.` and 300 zeros (below a double's
// normal range, 2.2e-308, without an exponent), or an exponent of 3 or more digits. Other long fractions
// (`33.3333333333333333`, `11.0000000000000000`, as numeric division writes them) are rounded by any parse, or exact:
// they need no scan.
const MAY_BE_INEXACT = /(?<![.\d])\d{16}|(?<!\d)0\.0{300}|[eE][+-]?\d{3}/
const INTEGER = /^-?\d+$/
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/
const MAX = BigInt(Number.MAX_SAFE_INTEGER)
const MIN_NORMAL = 2.2250738585072014e-308

/** [start, end) of each number token outside strings whose value a JS number cannot hold, in a valid JSON text. */
function inexactNumbers(text: string): [number, number][] {
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
      if (integer) {
        const digits = text.charCodeAt(start) === MINUS ? index - start - 1 : index - start
        if (digits >= 16) {
          const value = BigInt(text.slice(start, index))
          if (value > MAX || value < -MAX) found.push([start, index])
        }
      } else {
        const token = text.slice(start, index)
        const value = Number(token)
        // Beyond a double's range, or below its normal range where it keeps fewer digits than were written.
        if (!Number.isFinite(value) || (Math.abs(value) < MIN_NORMAL && !sameDecimal(token, String(value)))) found.push([start, index])
      }
    } else {
      index++
    }
  }
  return found
}

/** A decimal number's value as sign, significant digits (no leading or trailing zeros; '' for zero) and exponent. */
export function decimalParts(text: string): { negative: boolean; digits: string; exponent: number } {
  const negative = text.startsWith('-')
  const e = text.search(/[eE]/)
  const mantissa = text.slice(negative ? 1 : 0, e === -1 ? undefined : e)
  let exponent = e === -1 ? 0 : Number(text.slice(e + 1))
  const dot = mantissa.indexOf('.')
  let digits = dot === -1 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1)
  if (dot !== -1) exponent -= mantissa.length - dot - 1
  digits = digits.replace(/^0+/, '')
  const significant = digits.replace(/0+$/, '')
  return { negative, digits: significant, exponent: significant === '' ? 0 : exponent + digits.length - significant.length }
}

/** Whether two decimal texts are the same number (`-0` and `0` are). */
function sameDecimal(a: string, b: string): boolean {
  const x = decimalParts(a)
  const y = decimalParts(b)
  if (x.digits === '' || y.digits === '') return x.digits === y.digits
  return x.negative === y.negative && x.digits === y.digits && x.exponent === y.exponent
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const MINUS = 0x2d
const ZERO = 0x30
const NINE = 0x39
const NUMBER_CHARS = new Set([...'-+.eE0123456789'].map((char) => char.charCodeAt(0)))
const DIGIT_OR_MINUS = new Set([...'-0123456789'].map((char) => char.charCodeAt(0)))
