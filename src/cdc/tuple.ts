import { rowFromValues } from '../pg/row-functions.js'
import { typeParsersFor } from '../pg/type-parsers.js'
import type { Column } from '../pg/types.js'
import { UNCHANGED, type PgOutputMessage, type TupleValue } from './pgoutput.js'

type Relation = Extract<PgOutputMessage, { tag: 'relation' }>
type Parser = (text: string) => unknown

/**
 * Turns pgoutput tuples of a relation into rows with the same lossless type map as every other source. An unchanged
 * TOAST value stays `UNCHANGED` (the value in the warehouse stands); it is never read as NULL.
 */
export function tupleReader(relation: Relation): (tuple: readonly TupleValue[]) => Record<string, unknown> {
  const columns: Column[] = relation.columns.map((column) => ({ name: column.name, type: 'text', typeOid: column.typeOid }))
  const types = typeParsersFor(columns)
  const parsers = columns.map((column) => types.getTypeParser(column.typeOid, 'text') as Parser)
  // Keyed by untrusted column names: built by the row constructor, so `__proto__` is a column like any other.
  const build = rowFromValues(columns)
  return (tuple) =>
    build(
      columns.map((_, index) => {
        const value = tuple[index]
        return value === null || value === undefined ? null : value === UNCHANGED ? UNCHANGED : (parsers[index] as Parser)(value)
      }),
    )
}
