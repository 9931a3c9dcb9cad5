import { compileRow } from './row-functions.js'
import { identity as identityParser, typeParsersFor } from './type-parsers.js'
import type { Column } from './types.js'

type Parser = (text: string) => unknown

/**
 * Builds a function that turns decoded text fields into a row with the lossless type map.
 * The function is generated once per shape so every row has the same hidden class and no per-field lookups happen
 * in the loop. Rows inherit nothing (see ROW_PROTOTYPE), so a column named `__proto__` or `constructor` is a column
 * like any other.
 */
export function rowBuilder(columns: readonly Column[]): (fields: readonly (string | null)[]) => Record<string, unknown> {
  const types = typeParsersFor(columns)
  const parsers: Parser[] = columns.map((column) => types.getTypeParser(column.typeOid, 'text') as Parser)
  return compileRow(
    columns.map((column) => column.name),
    parsers.map((parser, index) => (parser === identityParser ? `f[${index}]` : `(f[${index}] === null ? null : p[${index}](f[${index}]))`)),
    ['f'],
    { p: parsers },
  )
}
