import { PIECE } from './replace-in-pieces.js'

/**
 * A streaming decoder of COPY's text format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2).
 *
 * Chunks arrive cut anywhere: inside a row, inside an escape, inside a multi-byte UTF-8 character. The decoder
 * only ever decodes bytes up to the last newline it has seen and keeps the rest as bytes, so none of those cuts
 * matter: a newline byte (0x0A) never occurs inside a multi-byte character or an escape.
 */
export class CopyTextDecoder {
  #pending: Buffer[] = []
  #rowsDecoded = 0

  constructor(readonly fieldCount: number) {}

  /** Decodes every complete row in `chunk` (plus what earlier chunks left); fields are strings or null. */
  push(chunk: Buffer): (string | null)[][] {
    const lastNewline = chunk.lastIndexOf(10)
    if (lastNewline === -1) {
      this.#pending.push(chunk)
      return []
    }
    const complete = this.#pending.length ? Buffer.concat([...this.#pending, chunk.subarray(0, lastNewline)]) : chunk.subarray(0, lastNewline)
    this.#pending = lastNewline < chunk.length - 1 ? [chunk.subarray(lastNewline + 1)] : []
    const lines = complete.toString('utf8').split('\n')
    const rows = new Array<(string | null)[]>(lines.length)
    for (let index = 0; index < lines.length; index++) rows[index] = this.#fields(lines[index] as string)
    return rows
  }

  /** Call at the end of the stream: data after the last newline means the stream was cut. */
  end(): void {
    if (this.#pending.some((chunk) => chunk.length > 0)) {
      throw new SyntaxError(`COPY data ended in the middle of row ${this.#rowsDecoded + 1}`)
    }
  }

  #fields(line: string): (string | null)[] {
    this.#rowsDecoded++
    const raw = line.split('\t')
    if (raw.length !== this.fieldCount) {
      throw new SyntaxError(`COPY row ${this.#rowsDecoded} has ${raw.length} fields; expected ${this.fieldCount}`)
    }
    const fields: (string | null)[] = raw
    for (let index = 0; index < raw.length; index++) {
      const field = raw[index] as string
      if (field.length > 0 && field.includes('\\')) fields[index] = field === '\\N' ? null : unescapeField(field)
    }
    return fields
  }
}

const SIMPLE_ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' }
const BYTE_ESCAPE = /\\(?:[0-7]|x[0-9A-Fa-f])/

/** The byte a simple escape `\X` stands for, by X's byte: `\t` a tab, ..., any other X itself. */
const SIMPLE_BYTES = Uint8Array.from({ length: 256 }, (_, byte) => SIMPLE_ESCAPES[String.fromCharCode(byte)]?.charCodeAt(0) ?? byte)

/**
 * Undoes COPY text escaping. PostgreSQL writes only `\b \f \n \r \t \v \\`, but reads octal (`\123`) and hex
 * (`\x5c`) byte escapes too; those name bytes of the encoded text, so a field that has them is rebuilt as bytes.
 * A field longer than PIECE is unescaped by scanning its bytes too: one `replace` over a huge field can abort the
 * process (replace-in-pieces.ts), and calls back once per escape (~20x slower than the scan on tens of millions).
 */
export function unescapeField(field: string): string {
  if (field.length > PIECE || BYTE_ESCAPE.test(field)) return unescapeBytes(field)
  return field.replace(/\\(.)/gs, (_, char: string) => SIMPLE_ESCAPES[char] ?? char)
}

/** One pass over the field's UTF-8 bytes (a backslash byte is never part of a multi-byte character). */
function unescapeBytes(field: string): string {
  const input = Buffer.from(field, 'utf8')
  const out = Buffer.allocUnsafe(input.length)
  let length = 0
  for (let index = 0; index < input.length; index++) {
    const byte = input[index] as number
    if (byte !== 0x5c || index === input.length - 1) {
      out[length++] = byte
      continue
    }
    const next = input[++index] as number
    if (next >= 0x30 && next <= 0x37) {
      let value = next - 0x30
      for (let digits = 1; digits < 3 && isOctal(input[index + 1]); digits++) value = value * 8 + ((input[++index] as number) - 0x30)
      out[length++] = value & 0xff
    } else if (next === 0x78 && isHex(input[index + 1])) {
      let value = Number.parseInt(String.fromCharCode(input[++index] as number), 16)
      if (isHex(input[index + 1])) value = value * 16 + Number.parseInt(String.fromCharCode(input[++index] as number), 16)
      out[length++] = value
    } else {
      out[length++] = SIMPLE_BYTES[next] as number
    }
  }
  return out.toString('utf8', 0, length)
}

function isOctal(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x30 && byte <= 0x37
}

function isHex(byte: number | undefined): boolean {
  return byte !== undefined && ((byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66))
}
