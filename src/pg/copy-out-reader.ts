/**
 * `COPY ... TO STDOUT` as an async iterable of COPY text, parsing the protocol itself
 * (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY): each CopyData message of text-format
 * COPY is one row, ending with a newline. It strips the message headers in place, in the socket read's own buffer
 * (pg-copy-streams copies every row twice, in many small pieces), and it only ever yields whole rows (a row cut by
 * the socket is held back), so streams of several COPYs can be interleaved chunk by chunk. Like pg-copy-streams, it
 * takes the connection's socket over while the COPY runs and hands it back to pg at CopyDone or ErrorResponse, so pg
 * sees the messages that follow.
 *
 * It is its own iterator rather than a Readable: a chunk goes from the socket's 'data' event straight to a waiting
 * `next()`, with no stream buffer between (a Readable's async iterator costs several promise turns per chunk, and
 * concatenates what it buffered). The socket is paused while more than `HIGH_WATER_MARK` bytes wait unread, which
 * stops the server through TCP.
 *
 * A reader that is not consumed to its end leaves the connection mid-protocol: destroy that client.
 */
export class CopyOutReader implements AsyncIterableIterator<Buffer> {
  /** Rows (CopyData messages) read so far. */
  rows = 0
  readonly text: string
  #connection: PgConnection | undefined
  #pgDataHandler: ((chunk: Buffer) => void) | undefined
  readonly #onData = (chunk: Buffer) => this.#parse(chunk)
  #attached = false
  #paused = false
  // Whole rows not yet taken, and the consumer waiting for them.
  #queue: Buffer[] = []
  #queued = 0
  #waiting: { resolve: (result: IteratorResult<Buffer>) => void; reject: (error: Error) => void } | undefined
  #ended = false
  #failure: Error | undefined
  // Protocol state carried across socket reads.
  readonly #header = Buffer.alloc(5)
  #headerFill = 0
  #code = 0
  #remaining = 0
  #inMessage = false
  /** The start of a row that continues in the next read (views into earlier reads). */
  #carry: Buffer[] = []

  constructor(text: string) {
    this.text = text
  }

  /** Called by pg when the query is sent. */
  submit(connection: PgConnection): void {
    this.#connection = connection
    const stream = connection.stream
    const handlers = stream.listeners('data') as ((chunk: Buffer) => void)[]
    if (handlers.length !== 1) throw new Error(`expected one data listener on the pg socket, found ${handlers.length}`)
    this.#pgDataHandler = handlers[0]
    stream.removeListener('data', this.#pgDataHandler as (chunk: Buffer) => void)
    this.#attached = true
    stream.on('data', this.#onData)
    connection.query(this.text)
  }

  /** Called by pg for an ErrorResponse, or when the connection breaks. */
  handleError(error: Error): void {
    this.#fail(error)
  }

  handleCommandComplete(): void {}

  handleReadyForQuery(): void {}

  [Symbol.asyncIterator](): this {
    return this
  }

  next(): Promise<IteratorResult<Buffer>> {
    const chunk = this.#queue.shift()
    if (chunk) {
      this.#queued -= chunk.length
      if (this.#paused && this.#queued < HIGH_WATER_MARK) this.#resume()
      return Promise.resolve({ value: chunk, done: false })
    }
    if (this.#failure) return Promise.reject(this.#failure)
    if (this.#ended) return Promise.resolve({ value: undefined, done: true })
    if (this.#paused) this.#resume()
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }))
  }

  /** Leaving early: what is queued is dropped. The connection stays mid-protocol (its owner destroys it). */
  return(): Promise<IteratorResult<Buffer>> {
    this.#queue = []
    this.#queued = 0
    this.#ended = true
    return Promise.resolve({ value: undefined, done: true })
  }

  #deliver(chunk: Buffer): void {
    const waiting = this.#waiting
    if (waiting) {
      this.#waiting = undefined
      waiting.resolve({ value: chunk, done: false })
      return
    }
    if (this.#ended) return
    this.#queue.push(chunk)
    this.#queued += chunk.length
    if (this.#attached && !this.#paused && this.#queued >= HIGH_WATER_MARK) {
      this.#paused = true
      this.#connection?.stream.pause()
    }
  }

  #end(): void {
    this.#ended = true
    const waiting = this.#waiting
    this.#waiting = undefined
    waiting?.resolve({ value: undefined, done: true })
  }

  #fail(error: Error): void {
    if (this.#failure || (this.#ended && !this.#waiting && this.#queue.length === 0)) return
    this.#failure = error
    this.#queue = []
    this.#queued = 0
    const waiting = this.#waiting
    this.#waiting = undefined
    waiting?.reject(error)
  }

  #resume(): void {
    this.#paused = false
    if (this.#attached) this.#connection?.stream.resume()
  }

  /**
   * One pass over a socket read: row payloads are moved down over the message headers inside the read's own buffer
   * (it is ours: pg does not see this socket while the COPY runs), so the read's whole rows end up contiguous at its
   * start, with no new buffer. A row cut by the end of the read is kept as a view and finished by the next read.
   */
  #parse(chunk: Buffer): void {
    let position = 0
    let write = 0
    let lastRowEnd = 0
    let rowEnded = false
    let completed: Buffer | undefined
    let completedAt = 0
    let rest: Buffer | undefined
    let done = false
    let failed = false
    while (position < chunk.length) {
      if (!this.#inMessage) {
        if (this.#headerFill === 0 && position + 5 <= chunk.length) {
          // The usual case: the whole header is in this read.
          this.#code = chunk[position] as number
          this.#remaining = chunk.readUInt32BE(position + 1) - 4
          position += 5
          if (this.#code === ERROR_RESPONSE) chunk.copy(this.#header, 0, position - 5, position)
        } else {
          const take = Math.min(5 - this.#headerFill, chunk.length - position)
          chunk.copy(this.#header, this.#headerFill, position, position + take)
          this.#headerFill += take
          position += take
          if (this.#headerFill < 5) break
          this.#headerFill = 0
          this.#code = this.#header[0] as number
          this.#remaining = this.#header.readUInt32BE(1) - 4
        }
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
      if (this.#code === COPY_DATA) {
        if (write !== position) chunk.copyWithin(write, position, position + take)
        write += take
      }
      position += take
      this.#remaining -= take
      if (this.#remaining === 0) {
        this.#inMessage = false
        if (this.#code === COPY_DATA) {
          this.rows++
          if (!rowEnded && this.#carry.length > 0) {
            // The row started in an earlier read ends here.
            completed = Buffer.concat([...this.#carry, chunk.subarray(0, write)])
            completedAt = write
            this.#carry = []
          }
          rowEnded = true
          lastRowEnd = write
        }
      }
    }
    if (!rowEnded) {
      if (write > 0) this.#carry.push(chunk.subarray(0, write))
    } else if (write > lastRowEnd) {
      this.#carry = [chunk.subarray(lastRowEnd, write)]
    }
    if (completed) this.#deliver(completed)
    if (lastRowEnd > completedAt) this.#deliver(chunk.subarray(completedAt, lastRowEnd))
    if (done) this.#finish(rest, failed)
  }

  /** Hands the socket back to pg. After an ErrorResponse, pg fails the query and calls `handleError`. */
  #finish(rest: Buffer | undefined, failed: boolean): void {
    const connection = this.#connection as PgConnection
    const stream = connection.stream
    this.#attached = false
    this.#paused = false
    stream.removeListener('data', this.#onData)
    const handler = this.#pgDataHandler as (chunk: Buffer) => void
    // What followed CopyDone in this read goes to pg first; later reads reach pg's listener in order.
    stream.on('data', handler)
    if (rest?.length) handler(rest)
    stream.resume()
    if (failed) return
    if (this.#carry.some((part) => part.length > 0)) {
      this.#fail(new SyntaxError('COPY data ended in the middle of a row'))
      return
    }
    this.#end()
  }
}

/** Unread bytes at which the socket is paused. */
const HIGH_WATER_MARK = 256 * 1024

const COPY_DATA = 0x64 // 'd'
const COPY_DONE = 0x63 // 'c'
const ERROR_RESPONSE = 0x45 // 'E'

/** The part of pg's Connection a submittable query uses. */
interface PgConnection {
  readonly stream: NodeJS.ReadableStream
  query(text: string): void
}
