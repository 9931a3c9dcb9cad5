/**
 * Returns a function that appends `suffix` to every line of COPY text: it inserts the suffix before each newline
 * byte. Rows may be cut anywhere between chunks; only newline bytes matter, and a newline byte only ever ends a row
 * in COPY text (newlines inside values are escaped as `\n`), so the function needs no state.
 */
export function appendToLines(suffix: Buffer): (chunk: Buffer) => Buffer {
  let positions = new Int32Array(1024)
  return (chunk) => {
    // One scan for the newlines, remembered, then one copy.
    let lines = 0
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) {
      if (lines === positions.length) {
        const grown = new Int32Array(positions.length * 2)
        grown.set(positions)
        positions = grown
      }
      positions[lines++] = at
    }
    if (lines === 0) return chunk
    const out = Buffer.allocUnsafe(chunk.length + lines * suffix.length)
    let from = 0
    let to = 0
    for (let line = 0; line < lines; line++) {
      const at = positions[line] as number
      to += chunk.copy(out, to, from, at)
      to += suffix.copy(out, to)
      out[to++] = 10
      from = at + 1
    }
    chunk.copy(out, to, from)
    return out
  }
}

/** Counts rows (newline bytes) in COPY text. */
export function countLines(chunk: Buffer): number {
  let lines = 0
  for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++
  return lines
}
