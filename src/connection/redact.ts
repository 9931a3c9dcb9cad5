/**
 * Removes the password from anything that looks like a connection URL or a libpq key/value string.
 * Used on every string pg-datakit prints, logs or stores that may carry user input.
 */
export function redact(text: string): string {
  return text
    .replace(/(postgres(?:ql)?:\/\/[^:/?#@\s]*):[^@\s]*@/gi, '$1@')
    .replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)/gi, '$1***')
}
