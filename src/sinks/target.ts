import type { Shape } from '../contracts.js'
import { ConfigError } from '../errors.js'
import { checkIdentifier } from '../pg/identifiers.js'

/** The sink table for a shape: the given name, or `br_<source table>`. */
export function targetTableName(shape: Shape, table: string | undefined, prefix = 'br_'): string {
  if (table !== undefined) return checkIdentifier(table, 'table')
  const origin = shape.origin.table
  if (!origin) {
    throw new ConfigError('table', 'the source has no table name (a query source without `name`); pass `table` to the sink')
  }
  return checkIdentifier(`${prefix}${origin}`, 'table')
}
