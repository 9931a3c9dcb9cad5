import { identity as identityParser, typeParsersFor } from './type-parsers.js'
import type { Column } from './types.js'

type Parser = (text: string) => unknown

/**
 * Builds a function that turns decoded text fields into a row object with the lossless type map.
 * The function is generated once per shape so every row object has the same hidden class and no per-field
 * lookups happen in the loop (column names enter the code only as JSON string literals).
 */
export function rowBuilder(columns: readonly Column[]): (fields: readonly (string | null)[]) => Record<string, unknown> {
  const types = typeParsersFor(columns)
  const parsers: Parser[] = columns.map((column) => types.getTypeParser(column.typeOid, 'text') as Parser)
  const identity = parsers.map((parser) => parser === identityParser)
  const body = columns
    .map((column, index) => {
      const field = `f[${index}]`
      const value = identity[index] ? field : `(${field} === null ? null : p[${index}](${field}))`
      return `${JSON.stringify(column.name)}: ${value}`
    })
    .join(',\n')
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const build = new Function('p', `return function row(f) { return {\n${body}\n} }`) as (
    p: Parser[],
  ) => (fields: readonly (string | null)[]) => Record<string, unknown>
  return build(parsers)
}
