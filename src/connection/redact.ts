/**
 * Removes the password from anything that looks like a connection URL or a libpq key/value string.
 * Used on every string pg-datakit prints, logs or stores that may carry user input.
 */
export function redact(text: string): string {
  return (
    text
      // A URL's user info runs to the LAST '@' of its authority, as pg-connection-string (WHATWG URL) reads it: a
      // password may hold an unencoded '@' or ':' (`postgresql://etl:p@ss:w0rd@host/db` connects), and several hosts
      // may each carry one. The user name is kept, everything else of the user info goes.
      .replace(/(postgres(?:ql)?:\/\/)([^\s"'<>/?#]*)@/gi, (_, scheme: string, userInfo: string) => `${scheme}${userInfo.split(/[:@]/)[0]}@`)
      // A password holding an unencoded '/', '?' or '#' ends the authority early; such a URL does not parse, but it
      // is printed in the error that says so: everything from the user name's ':' to the last '@' goes.
      .replace(/(postgres(?:ql)?:\/\/[^:/?#@\s"'<>]*):[^\s"'<>]*@/gi, '$1@')
      .replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)/gi, '$1***')
  )
}
