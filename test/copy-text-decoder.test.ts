import { describe, expect, it } from 'vitest'
import { CopyTextDecoder, unescapeField } from '../src/pg/copy-text-decoder.js'
import { inlineParameters, literal } from '../src/pg/inline-parameters.js'
import { appendToLines } from '../src/pg/copy-line-suffix.js'
import { parseArrayLiteral } from '../src/pg/array-literal.js'

/** COPY text as PostgreSQL writes it, and the fields it holds. */
const FIXTURE = Buffer.concat([
  Buffer.from('1\tplain\t\\N\t\n', 'utf8'), // NULL vs empty string
  Buffer.from('2\ttab\\there\\nnewline\\rcr\t\\\\N\tback\\\\slash\n', 'utf8'), // escapes; "\\N" text is not NULL
  Buffer.from('3\tünïcødé 🚀 日本\t€\t{"{1,2}","a\\\\"b"}\n', 'utf8'), // multi-byte characters, an array with escapes
  Buffer.from('4\t\\b\\f\\v\t\\x41\\102\t\\\\\\\\\n', 'utf8'), // rarer escapes PostgreSQL reads
])
const EXPECTED = [
  ['1', 'plain', null, ''],
  ['2', 'tab\there\nnewline\rcr', '\\N', 'back\\slash'],
  ['3', 'ünïcødé 🚀 日本', '€', '{"{1,2}","a\\"b"}'],
  ['4', '\b\f\v', 'AB', '\\\\'],
]

function decodeInPieces(buffer: Buffer, cuts: number[]): (string | null)[][] {
  const decoder = new CopyTextDecoder(4)
  const rows: (string | null)[][] = []
  let from = 0
  for (const cut of [...cuts, buffer.length]) {
    rows.push(...decoder.push(buffer.subarray(from, cut)))
    from = cut
  }
  decoder.end()
  return rows
}

describe('COPY text decoder', () => {
  it('decodes NULL, empty strings, escapes, multi-byte text and arrays', () => {
    expect(decodeInPieces(FIXTURE, [])).toEqual(EXPECTED)
  })

  it('decodes the same rows wherever the chunks are cut (every byte position, and 1-byte chunks)', () => {
    for (let cut = 1; cut < FIXTURE.length; cut++) {
      expect(decodeInPieces(FIXTURE, [cut])).toEqual(EXPECTED)
    }
    expect(
      decodeInPieces(
        FIXTURE,
        Array.from({ length: FIXTURE.length - 1 }, (_, index) => index + 1),
      ),
    ).toEqual(EXPECTED)
  })

  it('names the row that has the wrong number of fields, and a stream cut mid-row', () => {
    expect(() => new CopyTextDecoder(2).push(Buffer.from('1\t2\n1\t2\t3\n'))).toThrow(/row 2 has 3 fields; expected 2/)
    const decoder = new CopyTextDecoder(1)
    decoder.push(Buffer.from('1\n2'))
    expect(() => decoder.end()).toThrow(/middle of row 2/)
  })

  it('rebuilds octal and hex byte escapes as UTF-8 bytes', () => {
    expect(unescapeField('\\xc3\\xa9t\\303\\251')).toBe('été')
  })

  it('decodes nested arrays from decoded fields', () => {
    expect(parseArrayLiteral(EXPECTED[2]![3] as string, (raw) => raw)).toEqual(['{1,2}', 'a"b'])
  })
})

describe('appending fields to COPY lines', () => {
  it('appends to every line wherever chunks are cut', () => {
    const append = appendToLines(Buffer.from('\tX'))
    const input = Buffer.from('a\tb\nc\\nd\te\n')
    for (let cut = 0; cut <= input.length; cut++) {
      const out = Buffer.concat([append(input.subarray(0, cut)), append(input.subarray(cut))]).toString()
      expect(out).toBe('a\tb\tX\nc\\nd\te\tX\n')
    }
  })
})

describe('inlining parameters for COPY', () => {
  it('renders values as escape-string literals, and NULL', () => {
    expect(literal("it's \\ done")).toBe("E'it''s \\\\ done'")
    expect(literal(null)).toBe('NULL')
    expect(literal([1, 'a"b'])).toBe(`E'{"1","a\\\\"b"}'`)
    expect(literal(12n)).toBe("E'12'")
    expect(() => literal('a\0b')).toThrow(/NUL/)
  })

  it('replaces placeholders only outside strings, identifiers, dollar quotes and comments', () => {
    const sql = `select "$1", '$1', E'\\'$1', $$ $1 $$, $tag$ $2 $tag$, a$1 -- $1\n /* $1 /* $2 */ */ from t where x = $1 and y = $2`
    expect(inlineParameters(sql, ['v', 2])).toBe(
      `select "$1", '$1', E'\\'$1', $$ $1 $$, $tag$ $2 $tag$, a$1 -- $1\n /* $1 /* $2 */ */ from t where x = E'v' and y = E'2'`,
    )
  })

  it('refuses a placeholder without a value', () => {
    expect(() => inlineParameters('select $3', [1])).toThrow(/\$3/)
  })
})
