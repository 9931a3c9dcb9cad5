import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'

/**
 * Streams COPY text chunks into `COPY <target> (<columns>) FROM STDIN` with backpressure: the next chunk is
 * pulled only when the socket has room. If `chunks` throws or `signal` aborts, the COPY stream is destroyed,
 * which sends CopyFail: the server discards the rows and the caller's transaction can roll back.
 * Returns the rows the server says it copied.
 */
export async function copyIn(
  client: pg.ClientBase,
  statement: string,
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
  signal?: AbortSignal,
): Promise<number> {
  const stream = client.query(copyFrom(statement))
  await pipeline(Readable.from(chunks, { objectMode: false }), stream, signal ? { signal } : {})
  return stream.rowCount
}
