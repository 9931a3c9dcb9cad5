import { describe, expect, it } from 'vitest'
import { bronzeMetadata, copySource, extract, postgresSink } from '../src/index.js'
import { CopyTextDecoder } from '../src/pg.js'
import { copyField } from '../src/pg/copy-text-encoder.js'
import { unescapeField } from '../src/pg/copy-text-decoder.js'
import { formatArrayLiteral, parseArrayLiteral } from '../src/pg/array-literal.js'
import { PIECE, replaceCharsInPieces, replaceEscapesInPieces } from '../src/pg/replace-in-pieces.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('huge')

/** A deterministic string of `length` characters drawn from `alphabet` (xorshift, so failures reproduce). */
function randomText(length: number, alphabet: readonly string[], seed: number): string {
  let state = seed
  const chars: string[] = new Array(length)
  for (let index = 0; index < length; index++) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    chars[index] = alphabet[(state >>> 0) % alphabet.length] as string
  }
  return chars.join('')
}

const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' }
const escapeWhole = (text: string) => text.replace(/[\\\t\n\r]/g, (char) => ESCAPES[char] as string)
const UNESCAPES: Record<string, string> = { t: '\t', n: '\n', r: '\r' }
const unescapeWhole = (text: string) => text.replace(/\\(.)/gs, (_, char: string) => UNESCAPES[char] ?? char)

describe('escaping in pieces (unit, every cut)', () => {
  it('escapes exactly as one replace would, whatever the piece size', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const text = randomText(37, ['a', '\t', '\n', '\r', '\\', 'é'], seed)
      for (let piece = 1; piece <= 9; piece++) {
        expect(replaceCharsInPieces(text, /[\\\t\n\r]/g, (char) => ESCAPES[char] as string, piece)).toBe(escapeWhole(text))
      }
    }
  })

  it('never cuts a backslash from the character it escapes (runs of backslashes at every cut)', () => {
    const cases = ['\\\\\\\\', '\\\\\\t', 'a\\\\\\\\\\tb', '\\', 'ab\\', '\\\\\\', 'x\\ny\\\\z\\']
    for (let seed = 1; seed <= 40; seed++) cases.push(randomText(41, ['a', '\\', 't', 'n', '\\', '\\'], seed))
    for (const text of cases) {
      for (let piece = 1; piece <= 9; piece++) {
        expect(
          replaceEscapesInPieces(text, (char) => UNESCAPES[char] ?? char, piece),
          `${JSON.stringify(text)} in pieces of ${piece}`,
        ).toBe(unescapeWhole(text))
      }
    }
  })

  it('round-trips a COPY field longer than a piece with escapes straddling each cut', () => {
    // Escapes right before, at and after every piece boundary of the value and of its escaped form.
    const value = randomText(3 * PIECE + 11, ['a', '\t', 'b', '\n', '\\', '\r', 'ü'], 7)
    const marks = [PIECE - 1, PIECE, PIECE + 1, 2 * PIECE - 1, 2 * PIECE]
    const marked = marks.reduce((text, at) => `${text.slice(0, at)}\\${text.slice(at + 1)}`, value)
    const escaped = copyField(marked)
    expect(escaped).toBe(escapeWhole(marked))
    expect(unescapeField(escaped)).toBe(marked)
    // The streaming decoder, with the row cut into chunks across piece boundaries.
    const bytes = Buffer.from(`${escaped}\t\\N\n`)
    const decoder = new CopyTextDecoder(2)
    const rows = [PIECE - 1, 2 * PIECE + 3, bytes.length].flatMap((end, index, ends) =>
      decoder.push(bytes.subarray(index === 0 ? 0 : (ends[index - 1] as number), end)),
    )
    decoder.end()
    expect(rows).toEqual([[marked, null]])
  })

  it('quotes and unquotes huge array elements in pieces', () => {
    const element = randomText(PIECE + 5, ['a', '"', '\\', ',', '}'], 3)
    const literal = formatArrayLiteral([element, null, [element]], String)
    expect(parseArrayLiteral(literal, String)).toEqual([element, null, [element]])
  })
})

describe('huge text values through the decoded path', () => {
  // 48 M characters alternating text and characters COPY escapes: 24 M escapes, 72 M characters escaped. One global
  // `replace` over it needs a V8 array of ~72 M entries, past its limit of 2^26 on Node 20 (~45 M such characters;
  // fewer on other V8 versions): the process aborted, uncatchable, in the encoder and in the decoder.
  const REPEAT = 8_000_000

  it('moves a 48 M-character text full of tabs, newlines and backslashes from COPY into bronze unchanged', async () => {
    await db.sourceSql(`create table huge (id int primary key, t text)`)
    await db.sourceSql(`insert into huge values (1, repeat(E'x\\ty\\nz\\\\', ${REPEAT})), (2, E'small\\tone'), (3, null),
      (4, repeat(E'\\\\', 1000001) || repeat(E'\\r', 999999))`)
    const expected = await db.sourceSql(`select id, length(t) as length, md5(t) as md5 from huge order by id`)
    expect(expected[0]).toMatchObject({ id: 1, length: 6 * REPEAT })
    const report = await extract({
      from: copySource(db.source, { table: 'huge' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse, { mode: 'append' }),
      fastPath: false,
    })
    expect(report.path).toBe('rows')
    expect(report.rows).toBe(4)
    expect(await db.warehouseSql(`select id, length(t) as length, md5(t) as md5 from bronze.br_huge order by id`)).toEqual(expected)
  })
})
