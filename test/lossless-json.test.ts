import { describe, expect, it } from 'vitest'
import { JsonNumber, parseJsonLossless } from '../src/util/lossless-json.js'
import { toJsonText } from '../src/pg/json-text.js'
import { whyJsonbCannotHold } from '../src/pg/jsonb-limits.js'

describe('parseJsonLossless', () => {
  it('gives integers beyond 2^53 as bigint with every digit, anywhere in the value', () => {
    expect(parseJsonLossless('12345678901234567890')).toBe(12345678901234567890n)
    expect(parseJsonLossless('{"a": [1, {"b": -98765432109876543210}], "c": 18446744073709551615 }')).toEqual({
      a: [1, { b: -98765432109876543210n }],
      c: 18446744073709551615n,
    })
    // The edges: 2^53 - 1 is a safe number, 2^53 is not.
    expect(parseJsonLossless('[9007199254740991, -9007199254740991, 9007199254740992, -9007199254740992]')).toEqual([
      9007199254740991,
      -9007199254740991,
      9007199254740992n,
      -9007199254740992n,
    ])
  })

  it('leaves digits inside strings and keys, decimals and exponents alone', () => {
    expect(parseJsonLossless('{"12345678901234567890": "x\\"12345678901234567890", "d": 1234567890123456789.5, "e": 12345678901234567e3}')).toEqual({
      '12345678901234567890': 'x"12345678901234567890',
      // The nearest double, as JSON.parse gives it (the literal itself has more digits than a double holds).
      d: Number('1234567890123456789.5'),
      e: 12345678901234567e3,
    })
    // A string that happens to look like a marker stays a string.
    expect(parseJsonLossless('["\\u0000abc:12345678901234567890", 12345678901234567890]')).toEqual(['\u0000abc:12345678901234567890', 12345678901234567890n])
  })

  it('is JSON.parse for everything else, and throws as it does on bad JSON', () => {
    for (const text of ['null', 'true', '"s"', '1.5', '[]', '{"a":{"b":[null,false]}}']) expect(parseJsonLossless(text)).toEqual(JSON.parse(text))
    expect(() => parseJsonLossless('{"a": ')).toThrow(SyntaxError)
    // Leading zeros are not JSON, however many digits follow.
    expect(() => parseJsonLossless('[012345678901234567890]')).toThrow(SyntaxError)
  })
})

describe('the quick paths of parseJsonb and the encoder', () => {
  it('still finds every number a double cannot hold behind the prefilter, and passes long fractions a double rounds', () => {
    const tiny = `0.${'0'.repeat(320)}123456789`
    expect(parseJsonLossless(`[${tiny}, -${tiny}]`)).toEqual([new JsonNumber(tiny), new JsonNumber(`-${tiny}`)])
    expect(parseJsonLossless(`{"k": ${'9'.repeat(400)}.5}`)).toEqual({ k: new JsonNumber(`${'9'.repeat(400)}.5`) })
    expect(parseJsonLossless('[-12345678901234567, 1e-400]')).toEqual([-12345678901234567n, new JsonNumber('1e-400')])
    expect(parseJsonLossless('{"a": 11.0000000000000000, "b": 33.3333333333333333, "c": 0.0000000000000000001}')).toEqual({
      a: 11,
      b: 33.333333333333336,
      c: 1e-19,
    })
    // Beyond numeric's scale, written with an exponent, is still refused for jsonb.
    expect(whyJsonbCannotHold('[1e-16384]', parseJsonLossless('[1e-16384]'))).toMatch(/beyond jsonb's numeric range/)
  })

  it('writes what JSON.parse makes as JSON.stringify does, and everything else by its own form', () => {
    const plain = { s: 'tab\there "q" \u0000', n: -0, f: 1.5e300, nested: [1, null, { t: true, u: undefined }], e: {}, a: [] }
    expect(toJsonText(plain)).toBe(JSON.stringify(plain))
    expect(toJsonText({ big: 12345678901234567890n, exact: new JsonNumber('1e400'), inf: Infinity, arr: [undefined] })).toBe(
      '{"big":12345678901234567890,"exact":1e400,"inf":"Infinity","arr":[null]}',
    )
    expect(toJsonText([{ at: new Date('2024-01-01T00:00:00Z'), bytes: Buffer.from([1, 255]) }])).toBe('[{"at":"2024-01-01T00:00:00.000Z","bytes":"\\\\x01ff"}]')
  })
})
