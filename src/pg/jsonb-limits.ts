import { decimalParts, JsonNumber, mayHoldInexactNumbers } from '../util/lossless-json.js'

/**
 * What valid JSON jsonb cannot store (https://www.postgresql.org/docs/current/datatype-json.html): a string (value or
 * key) holding `\u0000` ("unsupported Unicode escape sequence") or a lone UTF-16 surrogate such as `"\ud800"`
 * (PostgreSQL text is UTF-8, which has no such character), and a number beyond `numeric`'s range (131072 digits
 * before the decimal point, 16383 after). The `json` type and `text` hold all of these, so they reach parseJsonb.
 *
 * Returns why `value` (parsed from `text`) cannot be stored, or undefined when it can. The common case is two
 * regular-expression tests on the text: the value is only walked when the text has a `\u0000` or surrogate escape, a
 * raw lone surrogate, or a number a JS number cannot hold.
 */
export function whyJsonbCannotHold(text: string, value: unknown): string | undefined {
  if (!SUSPECT_ESCAPE.test(text) && isWellFormed(text) && !mayHoldInexactNumbers(text)) return undefined
  return problemIn(value)
}

const SUSPECT_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/

/** `String.prototype.isWellFormed` (Node 20; not yet in the ES2022 lib this project compiles against). */
const isWellFormed = (text: string): boolean => (text as unknown as { isWellFormed(): boolean }).isWellFormed()

function problemIn(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return stringProblem(value)
    case 'bigint':
      return integerDigits(value.toString()) > MAX_WEIGHT ? `the number ${abbreviate(value.toString())} is beyond jsonb's numeric range` : undefined
    case 'object': {
      if (value === null) return undefined
      if (value instanceof JsonNumber) return numberProblem(value.text)
      if (Array.isArray(value)) {
        for (const item of value) {
          const problem = problemIn(item)
          if (problem) return problem
        }
        return undefined
      }
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        const problem = stringProblem(key) ?? problemIn(item)
        if (problem) return problem
      }
      return undefined
    }
    default:
      return undefined
  }
}

function stringProblem(text: string): string | undefined {
  if (text.includes('\u0000')) return 'a string holds \\u0000, which jsonb cannot store'
  if (!isWellFormed(text)) return 'a string holds a lone UTF-16 surrogate (e.g. \\ud800), which jsonb cannot store'
  return undefined
}

// numeric's limits: https://www.postgresql.org/docs/current/datatype-numeric.html
const MAX_WEIGHT = 131072
const MAX_SCALE = 16383

function numberProblem(text: string): string | undefined {
  const { digits, exponent } = decimalParts(text)
  const weight = digits === '' ? 0 : digits.length + exponent
  // numeric keeps the scale as written (trailing zeros included), so `1.000...` can overflow it too.
  const scale = Math.max(digits === '' ? 0 : -exponent, writtenScale(text))
  return weight > MAX_WEIGHT || scale > MAX_SCALE ? `the number ${abbreviate(text)} is beyond jsonb's numeric range` : undefined
}

function integerDigits(text: string): number {
  return text.replace(/^-?0*/, '').length
}

/** Digits after the decimal point as written, less the exponent: `1.50` 2, `1.5e-3` 4, `15e2` 0. */
function writtenScale(text: string): number {
  const e = text.search(/[eE]/)
  const mantissa = e === -1 ? text : text.slice(0, e)
  const dot = mantissa.indexOf('.')
  const fraction = dot === -1 ? 0 : mantissa.length - dot - 1
  return Math.max(0, fraction - (e === -1 ? 0 : Number(text.slice(e + 1))))
}

const abbreviate = (text: string) => (text.length > 24 ? `${text.slice(0, 12)}...${text.slice(-8)}` : text)
