/**
 * The one type map from PostgreSQL to DuckDB (and through DuckDB to Parquet): each column's DuckDB type, and the SQL
 * that turns the column's PostgreSQL text (as COPY's text format carries it) into a DuckDB value of that type. Every
 * conversion is lossless or fails with a clear error; nothing is rounded. See docs/types.md.
 */
import type { Column } from '../../pg/types.js'
import { sqlString } from './sql.js'

/** How one column lands in DuckDB. */
export interface DuckColumn {
  readonly name: string
  /** The DuckDB type, e.g. `DECIMAL(12,2)`, `TIMESTAMPTZ`, `VARCHAR[]`. */
  readonly type: string
  /** SQL turning `raw` (an expression: the COPY text field, escapes included, NULL for `\N`) into the value. */
  convert(raw: string): string
}

/** Prefix of every error a conversion raises inside DuckDB, so the sink can tell them from DuckDB's own. */
export const VALUE_ERROR_PREFIX = 'pg-datakit value:'

/** The function (registered on each connection, see array-udf.ts) that turns an array literal into a JSON array. */
export const ARRAY_FUNCTION = 'pgdk_array_json'

interface ScalarType {
  readonly type: string
  /** SQL from the value's PostgreSQL text (unescaped) to the DuckDB value. */
  readonly from: (text: string) => string
  /** The text may hold backslashes, tabs or newlines (COPY escapes them): unescape before converting. */
  readonly escaped: boolean
}

const cast = (type: string) => (text: string) => `CAST(${text} AS ${type})`
const plain = (type: string): ScalarType => ({ type, from: cast(type), escaped: false })
const VARCHAR: ScalarType = { type: 'VARCHAR', from: (text) => text, escaped: true }

/** PostgreSQL writes years before 1 as `0044-03-15 BC`; DuckDB reads `0044-03-15 (BC)` (and silently drops a bare `BC`). */
const era = (text: string) =>
  `CASE WHEN ends_with(${text}, ' BC') THEN regexp_replace(${text}, '^([0-9]+-[0-9]+-[0-9]+)(.*) BC$', '\\1 (BC)\\2') ELSE ${text} END`
/** SQL raising an error that names the column and shows the value. */
const fails = (column: string, what: string, text: string) => `error(${sqlString(`${VALUE_ERROR_PREFIX} column "${column}": ${what}`)} || ${text})`

/** Where the values land: a DuckDB table, or Parquet files (written by DuckDB) that cannot hold every DuckDB type. */
export type Warehouse = 'duckdb' | 'parquet'

function scalarType(oid: number, type: string, column: string, warehouse: Warehouse): ScalarType {
  // Parquet's INTERVAL has milliseconds, and its TIME carries no offset: both would lose something, so the text is kept.
  if (warehouse === 'parquet' && (oid === 1186 || oid === 1266)) return { ...VARCHAR, escaped: false }
  switch (oid) {
    case 16:
      return plain('BOOLEAN')
    case 20:
      return plain('BIGINT')
    case 21:
      return plain('SMALLINT')
    case 23:
      return plain('INTEGER')
    case 26:
      return plain('UINTEGER')
    case 700:
      return plain('FLOAT')
    case 701:
      return plain('DOUBLE')
    case 1700:
      return numericType(type, column)
    case 17:
      // bytea in hex output (`\x00ff`); the escape output format is never what pg-datakit's sessions use.
      return {
        type: 'BLOB',
        escaped: true,
        from: (text) => `CASE WHEN starts_with(${text}, '\\x') THEN from_hex(substr(${text}, 3)) ELSE ${fails(column, 'bytea not in hex format: ', text)} END`,
      }
    case 1082:
      return { type: 'DATE', escaped: false, from: (text) => `CAST(${era(text)} AS DATE)` }
    case 1114:
      return { type: 'TIMESTAMP', escaped: false, from: (text) => `CAST(${era(text)} AS TIMESTAMP)` }
    case 1184:
      return { type: 'TIMESTAMPTZ', escaped: false, from: (text) => `CAST(${era(text)} AS TIMESTAMPTZ)` }
    case 1083:
      return plain('TIME')
    case 1266:
      return plain('TIMETZ')
    case 1186:
      // PostgreSQL prints `-1 years -2 mons +3 days`: DuckDB reads the same without the plus signs.
      return { type: 'INTERVAL', escaped: false, from: (text) => `CAST(replace(${text}, '+', '') AS INTERVAL)` }
    case 2950:
      return plain('UUID')
    case 114:
    case 3802:
      return { type: 'JSON', escaped: true, from: (text) => `CAST(${text} AS JSON)` }
    default:
      // text, varchar, char, name, enums, ranges, geometric types, inet, bit strings, money, xml, tsvector, ...:
      // the PostgreSQL text, unchanged.
      return VARCHAR
  }
}

/** numeric(p,s) with 0 <= s <= p <= 38 is a DECIMAL; NaN (which a DECIMAL cannot hold) fails with the column named. */
function numericType(type: string, column: string): ScalarType {
  const match = /^numeric\((\d+)(?:,\s*(-?\d+))?\)$/.exec(type.replace(/\[\]$/, ''))
  const precision = Number(match?.[1])
  const scale = Number(match?.[2] ?? 0)
  if (!match || precision > 38 || scale < 0 || scale > precision) return { ...VARCHAR, escaped: false }
  const decimal = `DECIMAL(${precision},${scale})`
  return {
    type: decimal,
    escaped: false,
    from: (text) =>
      `CASE WHEN ${text} = 'NaN' THEN ${fails(column, `NaN cannot be stored in ${decimal} (PostgreSQL ${type}); cast the column to text in a query source. Value: `, text)} ELSE CAST(${text} AS ${decimal}) END`,
  }
}

/**
 * COPY's text format escapes backslash, tab, newline, carriage return, backspace, form feed and vertical tab
 * (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2). A value can hold no NUL character in
 * PostgreSQL, so `\\` is parked as chr(0) while the others are replaced.
 */
function unescape(raw: string): string {
  let out = `replace(${raw}, '\\\\', chr(0))`
  for (const [escape, code] of [
    ['t', 9],
    ['n', 10],
    ['r', 13],
    ['b', 8],
    ['f', 12],
    ['v', 11],
  ] as const) {
    out = `replace(${out}, '\\${escape}', chr(${code}))`
  }
  return `CASE WHEN contains(${raw}, '\\') THEN replace(${out}, chr(0), '\\') ELSE ${raw} END`
}

/** The DuckDB type of a column and the SQL that converts its COPY text. */
export function duckColumn(column: Column, warehouse: Warehouse = 'duckdb'): DuckColumn {
  const name = column.name
  if (column.elementOid !== undefined) {
    const element = scalarType(column.elementOid, column.type.replace(/\[\]$/, ''), name, warehouse)
    // Elements split on another delimiter (box: ';') do not fit a list parser: such arrays are kept as their text.
    if ((column.delimiter ?? ',') !== ',') return { name, type: 'VARCHAR', convert: unescape }
    return {
      name,
      type: `${element.type}[]`,
      convert: (raw) => {
        const text = unescape(raw)
        // Arrays whose elements need no quoting (numbers, dates, most tags) go through DuckDB's own list reader;
        // others through the JS parser of array literals, which also refuses what a list cannot hold.
        const list = `CASE WHEN NOT regexp_matches(${text}, '^\\{[^"''\\\\\\[\\]{}]*\\}$') THEN CAST(CAST(${ARRAY_FUNCTION}(${text}, ${sqlString(name)}) AS JSON) AS VARCHAR[]) ELSE CAST('[' || ${text}[2:-2] || ']' AS VARCHAR[]) END`
        return `list_transform(${list}, x -> ${element.from('x')})`
      },
    }
  }
  const scalar = scalarType(column.parseOid ?? column.typeOid, column.type, name, warehouse)
  return { name, type: scalar.type, convert: (raw) => scalar.from(scalar.escaped ? unescape(raw) : raw) }
}
