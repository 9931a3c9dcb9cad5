import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { CopyOutReader } from '../src/pg/copy-out-reader.js'

/** A protocol message: code, int32 length (itself included), payload. */
function message(code: string, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload
  const header = Buffer.alloc(5)
  header.write(code, 0)
  header.writeUInt32BE(body.length + 4, 1)
  return Buffer.concat([header, body])
}

const ROWS = ['1\tone\n', '2\ttwö 🚀\n', '3\t\\N\n', `4\t${'x'.repeat(300)}\n`]
const AFTER = Buffer.concat([message('C', 'COPY 4\0'), message('Z', 'I')])
const STREAM = Buffer.concat([
  message('H', Buffer.from([0, 0, 2, 0, 0, 0, 0])),
  message('d', ROWS[0]),
  message('N', 'a notice\0'),
  ...ROWS.slice(1).map((row) => message('d', row)),
  message('c'),
  AFTER,
])

/** Feeds `bytes` to a reader in pieces cut at `cuts`, like a pg socket would; returns what it emitted and gave back. */
async function feed(bytes: Buffer, cuts: number[]): Promise<{ out: string; toPg: Buffer; rows: number; chunks: string[]; failure: Error | undefined }> {
  const socket = new PassThrough()
  const toPg: Buffer[] = []
  const reader = new CopyOutReader('copy t to stdout')
  // pg's side: what comes back to it is parsed, and an ErrorResponse fails the query.
  socket.on('data', (chunk: Buffer) => {
    if (toPg.length === 0 && chunk[0] === 0x45) reader.handleError(new Error('ERROR from the server'))
    toPg.push(chunk)
  })
  let failure: Error | undefined
  reader.submit({ stream: socket as never, query: () => undefined })
  const chunks: string[] = []
  const reading = (async () => {
    for await (const chunk of reader) chunks.push(chunk.toString())
  })().catch((error: unknown) => (failure = error as Error))
  let from = 0
  for (const cut of [...cuts, bytes.length]) {
    // Like a socket, each read is a buffer of its own (the reader compacts rows inside it).
    socket.write(Buffer.from(bytes.subarray(from, cut)))
    from = cut
    await new Promise((resolve) => setImmediate(resolve))
  }
  socket.end()
  await reading
  return { out: chunks.join(''), toPg: Buffer.concat(toPg), rows: reader.rows, chunks, failure }
}

describe('CopyOutReader', () => {
  it('emits the rows, counts them, and hands what follows CopyDone back to pg, wherever the socket cuts', async () => {
    for (let cut = 1; cut < STREAM.length; cut++) {
      const { out, toPg, rows, chunks, failure } = await feed(STREAM, [cut])
      expect(failure).toBeUndefined()
      expect(out).toBe(ROWS.join(''))
      expect(rows).toBe(4)
      expect(toPg.equals(AFTER)).toBe(true)
      // Every chunk is whole rows.
      for (const chunk of chunks) expect(chunk.endsWith('\n')).toBe(true)
    }
  })

  it('emits the same rows with 1-byte reads', async () => {
    const cuts = Array.from({ length: STREAM.length - 1 }, (_, index) => index + 1)
    const { out, rows } = await feed(STREAM, cuts)
    expect(out).toBe(ROWS.join(''))
    expect(rows).toBe(4)
  })

  it('gives an ErrorResponse to pg with the bytes that follow', async () => {
    const error = message('E', 'SERROR\0C57P01\0Mterminating connection\0\0')
    const broken = Buffer.concat([message('H', Buffer.from([0, 0, 0])), message('d', ROWS[0]), error, message('Z', 'I')])
    for (let cut = 1; cut < broken.length; cut++) {
      const { out, toPg, failure } = await feed(broken, [cut])
      expect(failure?.message).toBe('ERROR from the server')
      expect(ROWS[0]?.startsWith(out)).toBe(true)
      expect(toPg.equals(Buffer.concat([error, message('Z', 'I')]))).toBe(true)
    }
  })
})

describe('CopyOutReader backpressure', () => {
  it('pauses the socket while unread rows pile up, and resumes it when they are read', async () => {
    const socket = new PassThrough()
    const reader = new CopyOutReader('copy t to stdout')
    socket.on('data', () => undefined)
    reader.submit({ stream: socket as never, query: () => undefined })
    const row = `${'y'.repeat(1023)}\n`
    // 1 MiB of rows, far above the high-water mark, while nobody reads.
    socket.write(message('H', Buffer.from([0, 0, 0])))
    for (let index = 0; index < 1024; index++) socket.write(message('d', row))
    socket.write(Buffer.concat([message('c'), AFTER]))
    await new Promise((resolve) => setImmediate(resolve))
    expect(socket.isPaused()).toBe(true)
    let bytes = 0
    for await (const chunk of reader) bytes += chunk.length
    expect(bytes).toBe(1024 * row.length)
    expect(reader.rows).toBe(1024)
    expect(socket.isPaused()).toBe(false)
  })
})
