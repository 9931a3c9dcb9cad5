import { EventEmitter } from 'node:events'
import type pg from 'pg'
import { POSTGRES_EPOCH_MICROS } from './pgoutput.js'

/**
 * Receives one WAL message: where its record starts, and the pgoutput bytes. `payload` is a view into pg's parser
 * buffer, which pg reuses as more data arrives: decode it (or copy it) before the listener returns.
 */
export type XLogListener = (walStart: bigint, payload: Buffer) => void

interface PgConnection {
  sendCopyFromChunk(chunk: Buffer): void
  readonly stream: NodeJS.ReadableStream
  query(text: string): void
}

/**
 * `START_REPLICATION ... LOGICAL` on a replication connection, as a pg submittable: the server's CopyData messages
 * are XLogData ('w') and primary keepalives ('k') (https://www.postgresql.org/docs/current/protocol-replication.html).
 * Keepalives that ask for a reply get one at once with the position `flushed()` reports, so the walsender never
 * drops the client, and a status is also sent every `statusIntervalMs`. The position reported is only ever what the
 * caller says is durable: the server may recycle WAL up to it.
 */
export class ReplicationStream extends EventEmitter {
  readonly text: string
  #connection: PgConnection | undefined
  #timer: NodeJS.Timeout | undefined

  constructor(
    text: string,
    private readonly flushed: () => bigint,
    private readonly statusIntervalMs = 10_000,
  ) {
    super()
    this.text = text
  }

  submit(connection: PgConnection): void {
    this.#connection = connection
    connection.query(this.text)
    this.#timer = setInterval(() => this.sendStatus(false), this.statusIntervalMs)
    this.#timer.unref()
  }

  handleCopyData(message: { chunk: Buffer }): void {
    const chunk = message.chunk
    const kind = chunk[0]
    if (kind === 0x77) {
      // 'w': XLogData: walStart, walEnd, sendTime, then the payload.
      this.emit('xlog', chunk.readBigUInt64BE(1), chunk.subarray(25))
    } else if (kind === 0x6b) {
      // 'k': primary keepalive: the server's WAL end (everything before it was sent), then whether to reply at once.
      this.emit('keepalive', chunk.readBigUInt64BE(1))
      if (chunk[17] === 1) this.sendStatus(false)
    }
  }

  /** Standby status update ('r'): written, flushed and applied are all the durable position. */
  sendStatus(replyRequested: boolean): void {
    if (!this.#connection) return
    const position = this.flushed()
    const message = Buffer.alloc(34)
    message[0] = 0x72
    message.writeBigUInt64BE(position, 1)
    message.writeBigUInt64BE(position, 9)
    message.writeBigUInt64BE(position, 17)
    message.writeBigInt64BE(BigInt(Date.now()) * 1000n - POSTGRES_EPOCH_MICROS, 25)
    message[33] = replyRequested ? 1 : 0
    this.#connection.sendCopyFromChunk(message)
  }

  /** Pauses the socket (backpressure while a batch is written), or resumes it. */
  pause(paused: boolean): void {
    const stream = this.#connection?.stream
    if (paused) stream?.pause()
    else stream?.resume()
  }

  handleError(error: Error): void {
    this.#stop()
    this.emit('error', error)
  }

  handleCommandComplete(): void {}

  handleReadyForQuery(): void {
    this.#stop()
    this.emit('end')
  }

  handleCopyInResponse(): void {}

  #stop(): void {
    clearInterval(this.#timer)
  }

  /** Ends the replication on a client (closing the connection is how a logical walsender is left). */
  static async close(client: pg.Client, stream: ReplicationStream): Promise<void> {
    stream.#stop()
    await client.end().catch(() => undefined)
  }
}
