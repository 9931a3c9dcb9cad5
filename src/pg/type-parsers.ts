import type { CustomTypesConfig } from 'pg'
import { parseArrayLiteral } from './array-literal.js'
import { OID, type Column } from './types.js'

type Parser = (text: string) => unknown

/** The parser of types carried as the server's text; callers may skip calling it. */
export const identity: Parser = (text) => text

/**
 * The one lossless type map every source uses (docs/types.md):
 * - int2, int4, oid -> number; float4, float8 -> number (NaN and ±Infinity kept)
 * - int8 -> bigint; numeric -> string (never a float)
 * - bool -> boolean; bytea -> Buffer
 * - timestamptz, timestamp, date, time, interval, uuid, json, jsonb, enums, ranges, ... -> the server's text,
 *   exactly (the session runs with TimeZone=UTC and DateStyle=ISO, so timestamps are never shifted
 *   by the process's time zone and microseconds are kept)
 * - arrays -> nested JS arrays of the element's mapping, NULL elements as null, split on the element type's delimiter
 *   (`Column.delimiter`: `;` for box[]).
 */
export function scalarParser(oid: number): Parser {
  switch (oid) {
    case OID.bool:
      return (text) => text === 't'
    case OID.int2:
    case OID.int4:
    case OID.oid:
    case OID.float4:
    case OID.float8:
      return Number
    case OID.int8:
      return BigInt
    case OID.bytea:
      return parseBytea
    default:
      return identity
  }
}

/**
 * bytea in either output format (https://www.postgresql.org/docs/current/datatype-binary.html): sessions ask for
 * `hex`, but a parser must never throw (on the cursor path pg calls it inside its socket handler, where an exception
 * hangs the read), so `escape` is read too.
 */
function parseBytea(text: string): Buffer {
  if (text.startsWith('\\x')) return Buffer.from(text.slice(2), 'hex')
  const out = Buffer.allocUnsafe(text.length)
  let length = 0
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index)
    if (code !== 0x5c) {
      out[length++] = code
    } else if (text[index + 1] === '\\') {
      out[length++] = 0x5c
      index++
    } else {
      // `\ooo`: every byte outside printable ASCII is written as three octal digits.
      out[length++] = Number.parseInt(text.slice(index + 1, index + 4), 8)
      index += 3
    }
  }
  return out.subarray(0, length)
}

const BUILTIN_ARRAYS: ReadonlyMap<number, number> = new Map([
  [1000, OID.bool],
  [1001, OID.bytea],
  [1005, OID.int2],
  [1007, OID.int4],
  [1016, OID.int8],
  [1021, OID.float4],
  [1022, OID.float8],
  [1231, OID.numeric],
  [1009, OID.text],
  [1015, OID.varchar],
  [1014, 1042],
  [1182, OID.date],
  [1115, OID.timestamp],
  [1185, OID.timestamptz],
  [2951, OID.uuid],
  [199, OID.json],
  [3807, OID.jsonb],
  [1028, OID.oid],
])

/** The parser for `columns` (text format), including arrays and domains the catalog told us about. */
export function typeParsersFor(columns: readonly Column[]): CustomTypesConfig {
  const parsers = new Map<number, Parser>()
  for (const column of columns) {
    const parseOid = column.parseOid ?? column.typeOid
    const parser = column.elementOid !== undefined ? arrayParser(column.elementOid, column.delimiter) : parserForOid(parseOid)
    parsers.set(column.typeOid, parser)
    if (!parsers.has(parseOid)) parsers.set(parseOid, parser)
  }
  return {
    getTypeParser: ((oid: number, format?: string) =>
      format === 'binary' ? identity : (parsers.get(oid) ?? parserForOid(oid))) as CustomTypesConfig['getTypeParser'],
  }
}

/** The default map, for queries whose columns were not described by the catalog. */
export const losslessTypes: CustomTypesConfig = typeParsersFor([])

function parserForOid(oid: number): Parser {
  const element = BUILTIN_ARRAYS.get(oid)
  return element === undefined ? scalarParser(oid) : arrayParser(element)
}

/** `delimiter`: the element type's typdelim, from the catalog (Column.delimiter); `,` for the built-in arrays above. */
function arrayParser(elementOid: number, delimiter = ','): Parser {
  const element = scalarParser(elementOid)
  return (text) => {
    try {
      return parseArrayLiteral(text, element, delimiter)
    } catch {
      // Never throw here (see parseBytea). The server's own text is kept, as for literals with bounds: a sink
      // writes it back unchanged and PostgreSQL reads it as the array it was.
      return text
    }
  }
}
