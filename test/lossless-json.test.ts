import { describe, expect, it } from 'vitest'
import { parseJsonLossless } from '../src/util/lossless-json.js'

describe('parseJsonLossless', () => {
  it('gives integers beyond 2^53 as bigint with every digit, anywhere in the value', () => {
    expect(parseJsonLossless('12345678901234567890')).toBe(12345678901234567890n)
    expect(parseJsonLossless('{"a": [1, {"b": -98765432109876543210}], "c": 18446744073709551615 }')).toEqual({
      a: [1, { b: -98765432109876543210n }],
      c: 18446744073709551615n,
    })
    // The edges: 2^53 - 1 is a safe number, 2^53 is not.
    expect(parseJsonLossless('[9007199254740991, -9007199254740991, 9007199254740992, -9007199254740992]')).toEqual([
      9007199254740991, -9007199254740991, 9007199254740992n, -9007199254740992n,
    ])
  })

  it('leaves digits inside strings and keys, decimals and exponents alone', () => {
    expect(parseJsonLossless('{"12345678901234567890": "x\\"12345678901234567890", "d": 1234567890123456789.5, "e": 12345678901234567e3}')).toEqual({
      '12345678901234567890': 'x"12345678901234567890',
      d: 1234567890123456789.5,
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
