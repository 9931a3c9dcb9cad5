import { describe, expect, it } from 'vitest'
import { formatArrayLiteral, parseArrayLiteral } from '../src/pg/array-literal.js'
import { copyTextChunks, encodeRows, rowEncoder, valueToText } from '../src/pg/copy-text-encoder.js'
import { OID } from '../src/pg/types.js'

describe('COPY text encoding', () => {
  it('escapes backslash, tab, newline and carriage return, and writes NULL as \\N', () => {
    const columns = [
      { name: 'a', type: 'text', typeOid: 25 },
      { name: 'b', type: 'text', typeOid: 25 },
    ]
    expect(
      encodeRows(
        [
          { a: 'x\\y\tz\nw\rv', b: null },
          { a: '', b: '\\N' },
        ],
        columns,
      ),
    ).toBe('x\\\\y\\tz\\nw\\rv\t\\N\n\t\\\\N\n')
  })

  it('writes every JS value of the type map in PostgreSQL input form', () => {
    expect(valueToText(-0)).toBe('-0')
    expect(valueToText(Number.NaN)).toBe('NaN')
    expect(valueToText(Number.NEGATIVE_INFINITY)).toBe('-Infinity')
    expect(valueToText(12345678901234567890n)).toBe('12345678901234567890')
    expect(valueToText(true)).toBe('t')
    expect(valueToText(Buffer.from([0, 255]))).toBe('\\x00ff')
    expect(valueToText(new Date('2024-01-02T03:04:05.678Z'))).toBe('2024-01-02T03:04:05.678Z')
    // bigint inside JSON is a JSON number with every digit, not a rounded double.
    expect(valueToText({ a: 12345678901234567890n, b: [1, 'x'] })).toBe('{"a":12345678901234567890,"b":[1,"x"]}')
    expect(
      valueToText([
        [1, null],
        ['a"b', 'c\\d'],
      ]),
    ).toBe('{{"1",NULL},{"a\\"b","c\\\\d"}}')
  })
})

describe('COPY text chunks', () => {
  it('cuts a batch into chunks of whole rows whose concatenation is the batch encoded at once', () => {
    const columns = [
      { name: 'id', type: 'int4', typeOid: OID.int4 },
      { name: 'note', type: 'text', typeOid: OID.text },
    ]
    for (const count of [0, 1, 127, 128, 129, 1000]) {
      const rows = Array.from({ length: count }, (_, id) => ({ id, note: id % 3 === 0 ? null : `row\t${id}\n` }))
      const chunks = [...copyTextChunks(rowEncoder(columns), rows)]
      expect(Buffer.concat(chunks.map((part) => part.chunk)).toString()).toBe(encodeRows(rows, columns))
      expect(chunks.reduce((sum, part) => sum + part.rows, 0)).toBe(count)
      for (const part of chunks) expect(part.chunk.toString().split('\n').length - 1).toBe(part.rows)
    }
  })
})

describe('array literals', () => {
  it('parses quoting, escapes, NULL and nesting', () => {
    expect(parseArrayLiteral('{1,NULL,"NULL","a,b","q\\"x","back\\\\slash",{}}', (raw) => raw)).toEqual(['1', null, 'NULL', 'a,b', 'q"x', 'back\\slash', []])
    expect(parseArrayLiteral('{{1,2},{3,4}}', Number)).toEqual([
      [1, 2],
      [3, 4],
    ])
  })

  it('keeps literals with explicit bounds as text, losing nothing', () => {
    expect(parseArrayLiteral('[0:1]={1,2}', Number)).toBe('[0:1]={1,2}')
  })

  it('round-trips through format and parse', () => {
    const value = [
      ['a b', null, '"', '\\', '{}', ''],
      ['x', 'y', 'z', ',', 'NULL', ' '],
    ]
    expect(parseArrayLiteral(formatArrayLiteral(value, String), (raw) => raw)).toEqual(value)
  })
})
