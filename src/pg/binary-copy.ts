/**
 * COPY's binary format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4), read as a stream of
 * chunks cut anywhere: an 11-byte signature, an int32 of flags, an int32 header-extension length and that many bytes;
 * then tuples, each an int16 field count followed by, per field, an int32 length (-1 for NULL) and that many bytes;
 * then the trailer, an int16 of -1. Every number is big-endian.
 *
 * `BinaryTuples` walks that structure with named states, counting tuples, and can append the same fields to every
 * tuple (run constants in append mode), which rewrites each tuple's field count.
 */
export const BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')

/** Where the scanner is: inside the fixed header, its extension, a tuple's field count, a field's length, its bytes. */
const State = { HEADER: 0, EXTENSION: 1, FIELD_COUNT: 2, FIELD_LENGTH: 3, FIELD_DATA: 4, END: 5 } as const
type State = (typeof State)[keyof typeof State]

const HEADER_BYTES = 19 // signature (11), flags (4), extension length (4)

export class BinaryTuples {
  /** Tuples seen so far. */
  tuples = 0
  #state: State = State.HEADER
  /** Bytes still to skip in EXTENSION or FIELD_DATA. */
  #remaining = 0
  #fieldsLeft = 0
  /** The start of a fixed-size piece (header, count, length) cut by the end of a chunk: finished by the next chunk. */
  #held: Buffer | undefined
  readonly #suffix: Buffer | undefined
  readonly #added: number
  /** Per chunk, in order: where a tuple's count starts (>= 0), or `-1 - offset` where a tuple ends. */
  #marks = new Int32Array(256)
  #markCount = 0

  /**
   * `append`: the fields (each an int32 length and its bytes) to add at the end of every tuple, and how many they
   * are. Without it, chunks pass through unchanged (but for the start of a piece held back at a cut).
   */
  constructor(append?: { readonly fields: Buffer; readonly count: number }) {
    this.#suffix = append?.fields
    this.#added = append?.count ?? 0
  }

  /** True once the trailer was read. */
  get ended(): boolean {
    return this.#state === State.END
  }

  /**
   * Reads a chunk; returns the bytes to pass on: the chunk, with the appended fields when asked for, less the start
   * of a field count or length that the chunk cuts (it is passed on with the next chunk, so a count can be rewritten).
   */
  push(input: Buffer): Buffer {
    const chunk = this.#held ? Buffer.concat([this.#held, input]) : input
    this.#held = undefined
    this.#markCount = 0
    let at = 0
    let end = chunk.length
    scan: while (at < chunk.length) {
      switch (this.#state) {
        case State.HEADER: {
          if (chunk.length - at < HEADER_BYTES) break scan
          if (!chunk.subarray(at, at + 11).equals(BINARY_SIGNATURE)) throw new SyntaxError('binary COPY data does not start with the PGCOPY signature')
          if ((chunk.readUInt32BE(at + 11) & 0x10000) !== 0) throw new SyntaxError('binary COPY data with OIDs is not supported')
          this.#remaining = chunk.readUInt32BE(at + 15)
          at += HEADER_BYTES
          this.#state = State.EXTENSION
          break
        }
        case State.EXTENSION:
        case State.FIELD_DATA: {
          const take = Math.min(this.#remaining, chunk.length - at)
          at += take
          this.#remaining -= take
          if (this.#remaining > 0) break scan
          if (this.#state === State.EXTENSION) this.#state = State.FIELD_COUNT
          else this.#fieldDone(at)
          break
        }
        case State.FIELD_COUNT: {
          if (chunk.length - at < 2) break scan
          const count = chunk.readInt16BE(at)
          if (count === -1) {
            at += 2
            this.#state = State.END
            break
          }
          if (count < 0) throw new SyntaxError(`binary COPY tuple ${this.tuples + 1} has a field count of ${count}`)
          this.#mark(at)
          at += 2
          this.#fieldsLeft = count
          this.#state = State.FIELD_LENGTH
          // A tuple of no fields ends at its count.
          if (count === 0) this.#tupleDone(at)
          break
        }
        case State.FIELD_LENGTH: {
          if (chunk.length - at < 4) break scan
          const length = chunk.readInt32BE(at)
          at += 4
          if (length < -1) throw new SyntaxError(`binary COPY tuple ${this.tuples + 1} has a field of length ${length}`)
          this.#remaining = Math.max(length, 0)
          this.#state = State.FIELD_DATA
          if (this.#remaining === 0) this.#fieldDone(at)
          break
        }
        case State.END:
          if (at < chunk.length) throw new SyntaxError('binary COPY data continues after its trailer')
          break scan
      }
    }
    if (at < chunk.length && this.#state !== State.EXTENSION && this.#state !== State.FIELD_DATA) {
      this.#held = chunk.subarray(at)
      end = at
    }
    return this.#suffix ? this.#rewrite(chunk, end) : end === chunk.length ? chunk : chunk.subarray(0, end)
  }

  /** Call at the end of the stream: a stream that ends before its trailer was cut. */
  end(): void {
    if (this.#state !== State.END) throw new SyntaxError(`binary COPY data ended before its trailer (after ${this.tuples} tuples)`)
  }

  #fieldDone(at: number): void {
    if (--this.#fieldsLeft > 0) this.#state = State.FIELD_LENGTH
    else this.#tupleDone(at)
  }

  #tupleDone(at: number): void {
    this.tuples++
    this.#state = State.FIELD_COUNT
    this.#mark(-1 - at)
  }

  #mark(position: number): void {
    if (!this.#suffix) return
    if (this.#markCount === this.#marks.length) {
      const grown = new Int32Array(this.#marks.length * 2)
      grown.set(this.#marks)
      this.#marks = grown
    }
    this.#marks[this.#markCount++] = position
  }

  /** One copy of the chunk with the suffix after each tuple's last field and each count raised by the added fields. */
  #rewrite(chunk: Buffer, end: number): Buffer {
    const suffix = this.#suffix as Buffer
    const marks = this.#markCount
    if (marks === 0) return end === chunk.length ? chunk : chunk.subarray(0, end)
    let ends = 0
    for (let index = 0; index < marks; index++) if ((this.#marks[index] as number) < 0) ends++
    const out = Buffer.allocUnsafe(end + ends * suffix.length)
    let from = 0
    let to = 0
    for (let index = 0; index < marks; index++) {
      const mark = this.#marks[index] as number
      if (mark >= 0) {
        // A count: copied raised. (A count cut by a chunk's end was held back, so it is always whole here.)
        to += chunk.copy(out, to, from, mark)
        out.writeInt16BE(chunk.readInt16BE(mark) + this.#added, to)
        to += 2
        from = mark + 2
      } else {
        const at = -1 - mark
        to += chunk.copy(out, to, from, at)
        to += suffix.copy(out, to)
        from = at
      }
    }
    to += chunk.copy(out, to, from, end)
    return out.subarray(0, to)
  }
}

/** The fields of the one tuple of a binary COPY (e.g. `COPY (SELECT ...) TO STDOUT (FORMAT binary)` of one row). */
export function onlyTupleFields(data: Buffer): { readonly fields: Buffer; readonly count: number } {
  if (!data.subarray(0, 11).equals(BINARY_SIGNATURE)) throw new SyntaxError('binary COPY data does not start with the PGCOPY signature')
  const start = HEADER_BYTES + data.readUInt32BE(15)
  const count = data.readInt16BE(start)
  let at = start + 2
  for (let field = 0; field < count; field++) at += 4 + Math.max(0, data.readInt32BE(at))
  if (data.readInt16BE(at) !== -1 || at + 2 !== data.length) throw new SyntaxError('expected binary COPY data of exactly one tuple')
  return { fields: data.subarray(start + 2, at), count }
}
