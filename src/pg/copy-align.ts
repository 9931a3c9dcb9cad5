/**
 * Re-cuts a stream of COPY text so every chunk ends at a row boundary: what follows the last newline is held
 * back and put in front of the next chunk. Needed before chunks of several COPY streams are interleaved.
 */
export async function* alignToRows(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let carry: Buffer | undefined
  for await (const chunk of chunks) {
    const data = carry ? Buffer.concat([carry, chunk]) : chunk
    const last = data.lastIndexOf(10)
    if (last === -1) {
      carry = data
      continue
    }
    carry = last < data.length - 1 ? Buffer.from(data.subarray(last + 1)) : undefined
    yield data.subarray(0, last + 1)
  }
  if (carry?.length) throw new SyntaxError('COPY data ended in the middle of a row')
}
