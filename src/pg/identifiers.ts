import { ConfigError } from '../errors.js'

/** PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated by the server, so they are refused here. */
export const MAX_IDENTIFIER_BYTES = 63

/** Quotes an identifier for SQL text: `"` doubled, always quoted, so case, dots and `;` are kept as data. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

/** `"schema"."table"` */
export function qualifiedName(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`
}

/** Checks a name the user gave before it is used anywhere: not empty, no NUL, not truncated by the server. */
export function checkIdentifier(name: unknown, field: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new ConfigError(field, 'must be a non-empty name')
  if (name.includes('\0')) throw new ConfigError(field, 'must not contain a NUL character')
  if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
    throw new ConfigError(field, `"${name}" is longer than ${MAX_IDENTIFIER_BYTES} bytes; PostgreSQL would truncate it`)
  }
  return name
}
