/**
 * Replacing escapes in values of any size.
 *
 * A global `String.prototype.replace` collects every match (and the text between matches) of the whole string in one
 * V8 FixedArray before building the result. Past about 2^26 entries (a value of ~45 M characters that alternates
 * text and characters to escape, fewer on other V8 versions) that array cannot grow and V8 aborts the process
 * ("Fatal JavaScript invalid size error"), which no `try` catches. Replacing piece by piece keeps each array small;
 * the pieces are joined once, into one flat string. (The COPY text codec scans the bytes of values this large
 * instead, which is faster still; array literals use these.)
 */

/** Characters per piece: large enough that values of ordinary size take the one-call path. */
export const PIECE = 1 << 20

/**
 * `text.replace(pattern, replace)` for a global `pattern` whose matches are single characters, so that cutting the
 * text anywhere cuts no match.
 */
export function replaceCharsInPieces(text: string, pattern: RegExp, replace: (char: string) => string, piece = PIECE): string {
  if (text.length <= piece) return text.replace(pattern, replace)
  const parts: string[] = []
  for (let start = 0; start < text.length; start += piece) parts.push(text.slice(start, start + piece).replace(pattern, replace))
  return parts.join('')
}

/**
 * `text.replace(/\\(.)/gs, ...)` in pieces: each backslash escapes the one character after it. A piece never ends
 * between a backslash and the character it escapes: a non-backslash character always ends an escape or stands alone,
 * so the run of backslashes at a piece's end pairs up from its first one, and an odd run leaves its last backslash
 * (the start of an escape) to the next piece.
 */
export function replaceEscapesInPieces(text: string, replace: (escaped: string) => string, piece = PIECE): string {
  const pattern = /\\(.)/gs
  const replacer = (_: string, char: string) => replace(char)
  if (text.length <= piece) return text.replace(pattern, replacer)
  const parts: string[] = []
  let start = 0
  while (start < text.length) {
    let end = Math.min(start + piece, text.length)
    if (end < text.length) {
      let run = 0
      while (end - run - 1 >= start && text.charCodeAt(end - run - 1) === BACKSLASH) run++
      // A piece of one backslash (piece size 1) still moves on: the escape then spans two characters.
      if (run % 2 === 1) end = end - 1 > start ? end - 1 : end + 1
    }
    parts.push(text.slice(start, end).replace(pattern, replacer))
    start = end
  }
  return parts.join('')
}

const BACKSLASH = 0x5c
