import { DuckDBScalarFunction, VARCHAR, type DuckDBConnection } from '@duckdb/node-api'
import { parseArrayLiteral } from '../../pg/array-literal.js'
import { ARRAY_FUNCTION, VALUE_ERROR_PREFIX } from './types.js'

/**
 * Registers `pgdk_array_json(text, column)` on a connection: a PostgreSQL array literal (one dimension) as a JSON
 * array of element texts and nulls, which DuckDB casts to a list. PostgreSQL's array syntax (quotes, backslashes,
 * `NULL` versus `"NULL"`) is not DuckDB's list syntax, so the same parser as every source's reads it. A value a list
 * cannot hold (several dimensions, explicit bounds such as `[0:1]={7,8}`) fails the run with the column named.
 */
export function registerArrayFunction(connection: DuckDBConnection): void {
  connection.registerScalarFunction(
    DuckDBScalarFunction.create({
      name: ARRAY_FUNCTION,
      returnType: VARCHAR,
      parameterTypes: [VARCHAR, VARCHAR],
      mainFunction: (info, input, output) => {
        const texts = input.getColumnVector(0)
        const names = input.getColumnVector(1)
        for (let row = 0; row < input.rowCount; row++) {
          const text = texts.getItem(row) as string | null
          if (text === null) {
            output.setItem(row, null)
            continue
          }
          const parsed = parseArrayLiteral(text, (raw) => raw)
          if (!Array.isArray(parsed) || parsed.some(Array.isArray)) {
            info.setError(
              `${VALUE_ERROR_PREFIX} column "${String(names.getItem(row))}": the array ${text.length > 80 ? `${text.slice(0, 80)}...` : text} has ` +
                `${Array.isArray(parsed) ? 'several dimensions' : 'explicit bounds'}, which a DuckDB list cannot hold; ` +
                `cast the column to text (or unnest it) in a query source`,
            )
            return
          }
          output.setItem(row, JSON.stringify(parsed))
        }
        output.flush()
      },
    }),
  )
}
