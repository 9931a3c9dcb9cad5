import { Readable } from 'node:stream'

/**
 * `COPY ... TO STDOUT` as a Readable of COPY text, parsing the protocol itself
 * (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY): each CopyData message of text-format
 * COPY is one row, ending with a newline. For every socket read it copies the rows' bytes once into one output
 * buffer, appending `suffix` to each row on the way (per-piece metadata costs no extra pass), and it only ever emits
 * whole rows (a row cut by the socket is held back). Like pg-copy-streams, it takes the connection's socket over
 * while the COPY runs and hands it back to pg at CopyDone or ErrorResponse, so pg sees the messages that follow.
 *
 * A reader that is not consumed to its end leaves the connection mid-protocol: destroy that client.
 */
export class CopyOutReader extends Readable {
  /** Rows (CopyData messages) read so far. */
  rows = 0
  readonly text: string
  readonly #suffix: Buffer | undefined
  #connection: PgConnection | undefined
  #pgDataHandler: ((chunk: Buffer) => void) | undefined
  readonly #onReadable = () => this.#forward()
  #attached = false
  #wanted = false
  #forwarding = false
  // Protocol state carried across socket reads.
  readonly #header = Buffer.alloc(5)
  #headerFill = 0
  #code = 0
  #remaining = 0
  #inMessage = false
  #carry: Buffer[] = []
  // Scratch for one read: [start, end, endsRow] per payload segment.
  #segments = new Int32Array(3 * 1024)

  constructor(text: string, suffix?: Buffer) {
    super({ highWaterMark: 64 * 1024 })
    this.text = text
    this.#suffix = suffix && suffix.length > 0 ? suffix : undefined
  }

  /** Called by pg when the query is sent. */
  submit(connection: PgConnection): void {
    this.#connection = connection
    const stream = connection.stream
    const handlers = stream.listeners('data') as ((chunk: Buffer) => void)[]
    if (handlers.length !== 1) throw new Error(`expected one data listener on the pg socket, found ${handlers.length}`)
    this.#pgDataHandler = handlers[0]
    stream.removeListener('data', this.#pgDataHandler as (chunk: Buffer) => void)
    stream.pause()
    this.#attached = true
    stream.on('readable', this.#onReadable)
    connection.query(this.text)
  }

  handleError(error: Error): void {
    this.destroy(error)
  }

  handleCommandComplete(): void {}

  handleReadyForQuery(): void {}

  override _read(): void {
    this.#wanted = true
    this.#forward()
  }

  #forward(): void {
    if (this.#forwarding || !this.#wanted || !this.#attached || !this.#connection) return
    this.#forwarding = true
    const stream = this.#connection.stream
    let chunk: Buffer | null
    while (this.#wanted && this.#attached && (chunk = stream.read() as Buffer | null) !== null) this.#parse(chunk)
    this.#forwarding = false
  }

  #parse(chunk: Buffer): void {
    let segments = 0
    let position = 0
    let rowEnds = 0
    let rest: Buffer | undefined
    let done = false
    let failed = false
    const record = (start: number, end: number, endsRow: boolean) => {
      if (segments * 3 + 3 > this.#segments.length) {
        const grown = new Int32Array(this.#segments.length * 2)
        grown.set(this.#segments)
        this.#segments = grown
      }
      this.#segments[segments * 3] = start
      this.#segments[segments * 3 + 1] = end
      this.#segments[segments * 3 + 2] = endsRow ? 1 : 0
      segments++
      if (endsRow) rowEnds++
    }
    while (position < chunk.length) {
      if (!this.#inMessage) {
        const take = Math.min(5 - this.#headerFill, chunk.length - position)
        chunk.copy(this.#header, this.#headerFill, position, position + take)
        this.#headerFill += take
        position += take
        if (this.#headerFill < 5) break
        this.#headerFill = 0
        this.#code = this.#header[0] as number
        this.#remaining = this.#header.readUInt32BE(1) - 4
        if (this.#code === ERROR_RESPONSE) {
          // pg parses the error (and what follows) and fails the query with it.
          rest = Buffer.concat([this.#header, chunk.subarray(position)])
          done = true
          failed = true
          break
        }
        if (this.#code === COPY_DONE) {
          rest = chunk.subarray(position + this.#remaining)
          done = true
          break
        }
        this.#inMessage = true
      }
      const take = Math.min(this.#remaining, chunk.length - position)
      if (this.#code === COPY_DATA) record(position, position + take, take === this.#remaining)
      position += take
      this.#remaining -= take
      if (this.#remaining === 0) {
        this.#inMessage = false
        if (this.#code === COPY_DATA) this.rows++
      }
    }
    this.#emit(chunk, segments, rowEnds)
    if (done) this.#finish(rest, failed)
  }

  /** Copies whole rows of this read (and the carried start of the first) into one buffer and pushes it. */
  #emit(chunk: Buffer, segments: number, rowEnds: number): void {
    // The segments after the last row end belong to a row that continues in the next read: carry them.
    let lastRowEnd = -1
    for (let index = segments - 1; index >= 0; index--) {
      if (this.#segments[index * 3 + 2] === 1) {
        lastRowEnd = index
        break
      }
    }
    const carried: Buffer[] = []
    for (let index = lastRowEnd + 1; index < segments; index++) {
      carried.push(Buffer.from(chunk.subarray(this.#segments[index * 3] as number, this.#segments[index * 3 + 1] as number)))
    }
    if (lastRowEnd === -1) {
      this.#carry.push(...carried)
      return
    }
    const suffixLength = this.#suffix?.length ?? 0
    let size = rowEnds * suffixLength
    for (const part of this.#carry) size += part.length
    for (let index = 0; index <= lastRowEnd; index++) size += (this.#segments[index * 3 + 1] as number) - (this.#segments[index * 3] as number)
    const out = Buffer.allocUnsafe(size)
    let to = 0
    for (const part of this.#carry) to += part.copy(out, to)
    for (let index = 0; index <= lastRowEnd; index++) {
      const start = this.#segments[index * 3] as number
      const end = this.#segments[index * 3 + 1] as number
      if (this.#segments[index * 3 + 2] === 1 && this.#suffix) {
        // The row's last byte is its newline: the suffix goes just before it.
        to += chunk.copy(out, to, start, end - 1)
        to += this.#suffix.copy(out, to)
        out[to++] = 10
      } else {
        to += chunk.copy(out, to, start, end)
      }
    }
    this.#carry = carried
    this.#wanted = this.push(out)
  }

  /** Hands the socket back to pg. After an ErrorResponse, pg fails the query and calls `handleError`. */
  #finish(rest: Buffer | undefined, failed: boolean): void {
    const connection = this.#connection as PgConnection
    const stream = connection.stream
    this.#attached = false
    stream.removeListener('readable', this.#onReadable)
    const handler = this.#pgDataHandler as (chunk: Buffer) => void
    stream.on('data', handler)
    const unread: Buffer[] = []
    for (let chunk = stream.read() as Buffer | null; chunk !== null; chunk = stream.read() as Buffer | null) unread.push(chunk)
    const toPg = Buffer.concat([...(rest ? [rest] : []), ...unread])
    if (toPg.length) handler(toPg)
    process.nextTick(() => stream.resume())
    if (failed) return
    if (this.#carry.some((part) => part.length > 0)) {
      this.destroy(new SyntaxError('COPY data ended in the middle of a row'))
      return
    }
    this.push(null)
  }
}

const COPY_DATA = 0x64 // 'd'
const COPY_DONE = 0x63 // 'c'
const ERROR_RESPONSE = 0x45 // 'E'

/** The part of pg's Connection a submittable query uses. */
interface PgConnection {
  readonly stream: NodeJS.ReadableStream & { read(): Buffer | null }
  query(text: string): void
}
