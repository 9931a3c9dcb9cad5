/**
 * A decoder of the pgoutput logical replication protocol, versions 1 and 2 (streamed transactions)
 * (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
 *
 * Messages inside a streamed transaction (between Stream Start and Stream Stop) carry the transaction's xid after
 * their type byte; the decoder tracks that state, so feed it every message of a stream, in order.
 */

/** A log sequence number, as PostgreSQL prints it (`16/B374D848`), and as a bigint for comparisons. */
export interface Lsn {
  readonly text: string
  readonly value: bigint
}

/** A column value in a tuple: its text, NULL, or "unchanged TOAST value, not sent" (never to be read as NULL). */
export type TupleValue = string | null | typeof UNCHANGED

/** Marks a TOASTed value an UPDATE left unchanged: pgoutput does not send it, and the stored value stands. */
export const UNCHANGED: unique symbol = Symbol('unchanged TOAST value')

export interface RelationColumn {
  readonly name: string
  readonly typeOid: number
  readonly typeModifier: number
  /** Part of the replica identity (the key sent for updates and deletes). */
  readonly isKey: boolean
}

export type PgOutputMessage =
  | { readonly tag: 'begin'; readonly finalLsn: Lsn; readonly commitTime: bigint; readonly xid: number }
  | { readonly tag: 'commit'; readonly flags: number; readonly commitLsn: Lsn; readonly endLsn: Lsn; readonly commitTime: bigint }
  | { readonly tag: 'origin'; readonly originLsn: Lsn; readonly name: string }
  | {
      readonly tag: 'relation'
      readonly xid: number | undefined
      readonly relationOid: number
      readonly schema: string
      readonly table: string
      /** d default, n nothing, f full, i index. */
      readonly replicaIdentity: string
      readonly columns: readonly RelationColumn[]
    }
  | { readonly tag: 'type'; readonly xid: number | undefined; readonly typeOid: number; readonly schema: string; readonly name: string }
  | { readonly tag: 'insert'; readonly xid: number | undefined; readonly relationOid: number; readonly newTuple: readonly TupleValue[] }
  | {
      readonly tag: 'update'
      readonly xid: number | undefined
      readonly relationOid: number
      /** 'K': the old key (the key changed); 'O': the whole old row (REPLICA IDENTITY FULL); absent otherwise. */
      readonly oldKind: 'K' | 'O' | undefined
      readonly oldTuple: readonly TupleValue[] | undefined
      readonly newTuple: readonly TupleValue[]
    }
  | {
      readonly tag: 'delete'
      readonly xid: number | undefined
      readonly relationOid: number
      readonly oldKind: 'K' | 'O'
      readonly oldTuple: readonly TupleValue[]
    }
  | {
      readonly tag: 'truncate'
      readonly xid: number | undefined
      readonly cascade: boolean
      readonly restartIdentity: boolean
      readonly relationOids: readonly number[]
    }
  | {
      readonly tag: 'message'
      readonly xid: number | undefined
      readonly transactional: boolean
      readonly lsn: Lsn
      readonly prefix: string
      readonly content: Buffer
    }
  | { readonly tag: 'stream-start'; readonly xid: number; readonly firstSegment: boolean }
  | { readonly tag: 'stream-stop' }
  | { readonly tag: 'stream-commit'; readonly xid: number; readonly flags: number; readonly commitLsn: Lsn; readonly endLsn: Lsn; readonly commitTime: bigint }
  | { readonly tag: 'stream-abort'; readonly xid: number; readonly subXid: number }

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
export const POSTGRES_EPOCH_MICROS = 946_684_800_000_000n

/** A PostgreSQL timestamp (microseconds since 2000-01-01 UTC) as ISO text with microseconds. */
export function timestampText(micros: bigint): string {
  // As a double it is exact for ±285 years around 1970; beyond that the bigint path keeps every digit.
  const unix = micros + POSTGRES_EPOCH_MICROS
  if (unix > -MAX_EXACT && unix < MAX_EXACT) {
    const value = Number(unix)
    // Commit times come in order, many within one second: the date and time up to the second are made once per second.
    const seconds = Math.floor(value / 1_000_000)
    if (seconds !== lastSecond) {
      lastSecond = seconds
      lastSecondText = new Date(seconds * 1000).toISOString().slice(0, -4)
    }
    return `${lastSecondText}${String(value - seconds * 1_000_000).padStart(6, '0')}Z`
  }
  const millis = unix / 1000n
  const rest = ((unix % 1000n) + 1000n) % 1000n
  return `${new Date(Number(unix < 0n && rest ? millis - 1n : millis)).toISOString().slice(0, 23)}${rest.toString().padStart(3, '0')}Z`
}

const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER)
let lastSecond = Number.NaN
let lastSecondText = ''
const TWO_32 = 4_294_967_296

/** An LSN as PostgreSQL prints it. */
export function lsnText(value: bigint): string {
  if (value >= 0n && value < MAX_EXACT) {
    // In doubles (one conversion) rather than bigint shifts and masks: the same digits, a few times faster.
    const number = Number(value)
    const high = Math.floor(number / TWO_32)
    return `${high.toString(16).toUpperCase()}/${(number - high * TWO_32).toString(16).toUpperCase()}`
  }
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`
}

/** Its text is made when first read: most LSNs the decoder meets are only compared. */
class DecodedLsn implements Lsn {
  #text: string | undefined
  constructor(readonly value: bigint) {}
  get text(): string {
    return (this.#text ??= lsnText(this.value))
  }
  toJSON(): string {
    return this.text
  }
}

export function lsnFromBigInt(value: bigint): Lsn {
  return new DecodedLsn(value)
}

export function lsnFromText(text: string): Lsn {
  const [high, low] = text.split('/')
  if (high === undefined || low === undefined || !/^[0-9A-Fa-f]{1,8}$/.test(high) || !/^[0-9A-Fa-f]{1,8}$/.test(low)) {
    throw new SyntaxError(`"${text}" is not an LSN`)
  }
  return { text: text.toUpperCase(), value: (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`) }
}

export class PgOutputDecoder {
  #streaming = false

  decode(message: Buffer): PgOutputMessage {
    const reader = new Reader(message)
    const tag = String.fromCharCode(reader.byte())
    const streamedXid = () => (this.#streaming ? reader.int32() : undefined)
    switch (tag) {
      case 'B':
        return { tag: 'begin', finalLsn: reader.lsn(), commitTime: reader.int64(), xid: reader.int32() }
      case 'C':
        return { tag: 'commit', flags: reader.byte(), commitLsn: reader.lsn(), endLsn: reader.lsn(), commitTime: reader.int64() }
      case 'O':
        return { tag: 'origin', originLsn: reader.lsn(), name: reader.string() }
      case 'R': {
        const xid = streamedXid()
        const relationOid = reader.int32()
        const schema = reader.string()
        const table = reader.string()
        const replicaIdentity = String.fromCharCode(reader.byte())
        const count = reader.int16()
        const columns: RelationColumn[] = []
        for (let index = 0; index < count; index++) {
          const flags = reader.byte()
          columns.push({ isKey: (flags & 1) === 1, name: reader.string(), typeOid: reader.int32(), typeModifier: reader.signedInt32() })
        }
        return { tag: 'relation', xid, relationOid, schema, table: table, replicaIdentity, columns }
      }
      case 'Y': {
        const xid = streamedXid()
        return { tag: 'type', xid, typeOid: reader.int32(), schema: reader.string(), name: reader.string() }
      }
      case 'I': {
        const xid = streamedXid()
        const relationOid = reader.int32()
        reader.expect('N')
        return { tag: 'insert', xid, relationOid, newTuple: reader.tuple() }
      }
      case 'U': {
        const xid = streamedXid()
        const relationOid = reader.int32()
        let kind = String.fromCharCode(reader.byte())
        let oldKind: 'K' | 'O' | undefined
        let oldTuple: TupleValue[] | undefined
        if (kind === 'K' || kind === 'O') {
          oldKind = kind
          oldTuple = reader.tuple()
          kind = String.fromCharCode(reader.byte())
        }
        if (kind !== 'N') throw new SyntaxError(`pgoutput Update: expected 'N', found '${kind}'`)
        return { tag: 'update', xid, relationOid, oldKind, oldTuple, newTuple: reader.tuple() }
      }
      case 'D': {
        const xid = streamedXid()
        const relationOid = reader.int32()
        const kind = String.fromCharCode(reader.byte())
        if (kind !== 'K' && kind !== 'O') throw new SyntaxError(`pgoutput Delete: expected 'K' or 'O', found '${kind}'`)
        return { tag: 'delete', xid, relationOid, oldKind: kind, oldTuple: reader.tuple() }
      }
      case 'T': {
        const xid = streamedXid()
        const count = reader.int32()
        const options = reader.byte()
        const relationOids: number[] = []
        for (let index = 0; index < count; index++) relationOids.push(reader.int32())
        return { tag: 'truncate', xid, cascade: (options & 1) === 1, restartIdentity: (options & 2) === 2, relationOids }
      }
      case 'M': {
        const xid = streamedXid()
        const flags = reader.byte()
        const lsn = reader.lsn()
        const prefix = reader.string()
        const length = reader.int32()
        // Copied: the other values are decoded into new strings, but these bytes would still point into `message`.
        return { tag: 'message', xid, transactional: (flags & 1) === 1, lsn, prefix, content: Buffer.from(reader.bytes(length)) }
      }
      case 'S': {
        this.#streaming = true
        return { tag: 'stream-start', xid: reader.int32(), firstSegment: reader.byte() === 1 }
      }
      case 'E':
        this.#streaming = false
        return { tag: 'stream-stop' }
      case 'c':
        return { tag: 'stream-commit', xid: reader.int32(), flags: reader.byte(), commitLsn: reader.lsn(), endLsn: reader.lsn(), commitTime: reader.int64() }
      case 'A':
        return { tag: 'stream-abort', xid: reader.int32(), subXid: reader.int32() }
      default:
        throw new SyntaxError(`unknown pgoutput message '${tag}' (0x${message[0]?.toString(16)})`)
    }
  }
}

/** The high 32 bits of a 64-bit value below which it is exact as a double (2^53). */
const HIGH_EXACT = 2 ** 21
/** TupleData kinds: 'n' NULL, 'u' unchanged TOAST value, 't' text, 'b' binary. */
const KIND_NULL = 0x6e
const KIND_UNCHANGED = 0x75
const KIND_TEXT = 0x74
const KIND_BINARY = 0x62

class Reader {
  #at = 0
  constructor(readonly buffer: Buffer) {}

  byte(): number {
    this.#need(1)
    return this.buffer[this.#at++] as number
  }

  int16(): number {
    this.#need(2)
    const value = this.buffer.readInt16BE(this.#at)
    this.#at += 2
    return value
  }

  int32(): number {
    this.#need(4)
    const value = this.buffer.readUInt32BE(this.#at)
    this.#at += 4
    return value
  }

  /** Type modifiers are signed (-1: none); OIDs, xids and lengths are read unsigned. */
  signedInt32(): number {
    this.#need(4)
    const value = this.buffer.readInt32BE(this.#at)
    this.#at += 4
    return value
  }

  int64(): bigint {
    this.#need(8)
    const high = this.buffer.readInt32BE(this.#at)
    const low = this.buffer.readUInt32BE(this.#at + 4)
    this.#at += 8
    // One bigint from a double when the value is exact as one (timestamps are, for ±285 years): fewer allocations.
    return high >= -HIGH_EXACT && high < HIGH_EXACT ? BigInt(high * TWO_32 + low) : (BigInt(high) << 32n) | BigInt(low)
  }

  lsn(): Lsn {
    this.#need(8)
    const high = this.buffer.readUInt32BE(this.#at)
    const low = this.buffer.readUInt32BE(this.#at + 4)
    this.#at += 8
    return lsnFromBigInt(high < HIGH_EXACT ? BigInt(high * TWO_32 + low) : (BigInt(high) << 32n) | BigInt(low))
  }

  string(): string {
    const end = this.buffer.indexOf(0, this.#at)
    if (end === -1) throw new SyntaxError('pgoutput: unterminated string')
    const value = this.buffer.toString('utf8', this.#at, end)
    this.#at = end + 1
    return value
  }

  bytes(length: number): Buffer {
    this.#need(length)
    const value = this.buffer.subarray(this.#at, this.#at + length)
    this.#at += length
    return value
  }

  expect(char: string): void {
    const found = String.fromCharCode(this.byte())
    if (found !== char) throw new SyntaxError(`pgoutput: expected '${char}', found '${found}'`)
  }

  tuple(): TupleValue[] {
    const count = this.int16()
    const values = new Array<TupleValue>(count)
    const buffer = this.buffer
    for (let index = 0; index < count; index++) {
      const kind = this.byte()
      if (kind === KIND_NULL) values[index] = null
      else if (kind === KIND_UNCHANGED) values[index] = UNCHANGED
      else if (kind === KIND_TEXT || kind === KIND_BINARY) {
        const length = this.int32()
        this.#need(length)
        // Read in place (no view of the bytes made first): most values are short.
        values[index] = buffer.toString(kind === KIND_TEXT ? 'utf8' : 'hex', this.#at, this.#at + length)
        this.#at += length
      } else throw new SyntaxError(`pgoutput: unknown tuple value kind '${String.fromCharCode(kind)}'`)
    }
    return values
  }

  #need(count: number): void {
    if (this.#at + count > this.buffer.length) throw new SyntaxError('pgoutput: message ends early')
  }
}
