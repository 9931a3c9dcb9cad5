import { toJsonText } from '../pg/json-text.js'
import { identity, losslessTypes } from '../pg/type-parsers.js'
import { OID } from '../pg/types.js'

type Parser = (text: string) => unknown

/**
 * The JSON text of a column value straight from the server's text, equal to reading it through the lossless type map
 * and writing that as JSON (int8 as an exact JSON number, numeric as a string, NaN and infinities as strings), without
 * building the JS value for the common types.
 */
export function columnJson(typeOid: number): (text: string) => string {
  switch (typeOid) {
    case OID.bool:
      return (text) => (text === 't' ? 'true' : 'false')
    case OID.int2:
    case OID.int4:
    case OID.int8:
    case OID.oid:
      return (text) => text
    default: {
      const parse = losslessTypes.getTypeParser(typeOid, 'text') as Parser
      return parse === identity ? (text) => JSON.stringify(text) : (text) => toJsonText(parse(text))
    }
  }
}
