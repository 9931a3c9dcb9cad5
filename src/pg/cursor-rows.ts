import type Cursor from 'pg-cursor'
import { rowFromValues } from './row-functions.js'
import { typeParsersFor } from './type-parsers.js'
import type { Column } from './types.js'

/**
 * How a cursor source gets rows it can trust. pg keys a row itself (`row[field.name] = value` on a plain object), so
 * what a column named `__proto__` becomes depends on pg's version (8.11 drops the value; later versions keep it as an
 * own property on an object that still inherits Object.prototype). Asked for arrays (`rowMode: 'array'`), pg only
 * parses values with the lossless type map, and `row` keys them into a row that inherits nothing (ROW_PROTOTYPE).
 *
 * @example
 * const { config, row } = cursorRows(columns)
 * const cursor = client.query(new Cursor<unknown[]>(sql, parameters, config))
 * const rows = (await cursor.read(100)).map(row)
 */
export function cursorRows(columns: readonly Column[]): {
  readonly config: Cursor.CursorQueryConfig
  readonly row: (values: readonly unknown[]) => Record<string, unknown>
} {
  return {
    config: { types: typeParsersFor(columns), rowMode: 'array' },
    row: rowFromValues(columns),
  }
}
