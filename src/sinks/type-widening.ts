import { OID } from '../pg/types.js'

/** A column type as the catalog holds it: `pg_attribute.atttypid` and `atttypmod`, and the element type of an array. */
export interface CatalogType {
  readonly oid: number
  /** The type modifier: -1 when unconstrained. For an array it constrains the elements. */
  readonly typmod: number
  /** For arrays: the element type's OID. */
  readonly elementOid?: number
}

const OIDS = {
  ...OID,
  bpchar: 1042,
  time: 1083,
  interval: 1186,
  timetz: 1266,
  varbit: 1562,
} as const

/** Decimal digits every value of an integer type fits in (int2 up to 32767, int4 2147483647, int8 9223372036854775807). */
const INTEGER_DIGITS: ReadonlyMap<number, number> = new Map([
  [OIDS.int2, 5],
  [OIDS.int4, 10],
  [OIDS.int8, 19],
])

/** Types whose modifier is a maximum length (`varchar(n)`, `char(n)`, `varbit(n)`): `n + 4`, or the bit count. */
const LENGTH_TYPES = new Set<number>([OIDS.varchar, OIDS.bpchar, OIDS.varbit])

/** Types whose modifier is the fractional-second precision; unconstrained is 6 (microseconds). */
const PRECISION_TYPES = new Set<number>([OIDS.timestamp, OIDS.timestamptz, OIDS.time, OIDS.timetz])

/**
 * Whether every value of type `narrow` is a value of type `wide`, exactly: a column of type `wide` can take the rows
 * of a `narrow` one without rounding, truncating or failing, and `alter column ... type wide` on a `narrow` column
 * changes no value. Only widenings that keep the kind of value are known: integers into larger integers or numerics,
 * numerics into numerics with no fewer integer and fractional digits, longer strings, finer timestamps and times,
 * float4 into float8, arrays of any of these. Anything else (text and integer, json and jsonb, ...) is not.
 *
 * The modifiers are decoded as PostgreSQL stores them (`src/backend/utils/adt/numeric.c`, `varchar.c`, `datetime.c`).
 */
export function typeHolds(wide: CatalogType, narrow: CatalogType): boolean {
  if (wide.oid === narrow.oid && wide.typmod === narrow.typmod) return true
  if (wide.elementOid !== undefined || narrow.elementOid !== undefined) {
    if (wide.elementOid === undefined || narrow.elementOid === undefined) return false
    return typeHolds({ oid: wide.elementOid, typmod: wide.typmod }, { oid: narrow.elementOid, typmod: narrow.typmod })
  }
  if (wide.oid === narrow.oid) return modifierHolds(wide.oid, wide.typmod, narrow.typmod)

  const digits = INTEGER_DIGITS.get(narrow.oid)
  if (digits !== undefined) {
    const wideDigits = INTEGER_DIGITS.get(wide.oid)
    if (wideDigits !== undefined) return wideDigits >= digits
    if (wide.oid === OIDS.numeric) {
      if (wide.typmod === -1) return true
      const { precision, scale } = numericModifier(wide.typmod)
      return scale >= 0 && precision - scale >= digits
    }
    return false
  }
  if (narrow.oid === OIDS.float4) return wide.oid === OIDS.float8
  // varchar and text are one kind of value; only a length limit tells them apart.
  if (narrow.oid === OIDS.varchar) return wide.oid === OIDS.text
  if (narrow.oid === OIDS.text) return wide.oid === OIDS.varchar && wide.typmod === -1
  return false
}

/**
 * The narrowest type that holds every value of both, when neither holds the other and such a type exists: for
 * numbers, `numeric` with the larger count of integer digits and the larger scale (`numeric(12,2)` and
 * `numeric(12,4)` make `numeric(14,4)`; `int4` and `numeric(5,2)` make `numeric(12,2)`). Undefined for anything
 * else: a change of kind has no lossless common type.
 */
export function commonType(a: CatalogType, b: CatalogType): string | undefined {
  if (a.elementOid !== undefined || b.elementOid !== undefined) {
    if (a.elementOid === undefined || b.elementOid === undefined) return undefined
    const element = commonType({ oid: a.elementOid, typmod: a.typmod }, { oid: b.elementOid, typmod: b.typmod })
    return element === undefined ? undefined : `${element}[]`
  }
  const x = decimalDigits(a)
  const y = decimalDigits(b)
  if (!x || !y) return undefined
  if (x === 'any' || y === 'any') return 'numeric'
  const scale = Math.max(x.scale, y.scale)
  const precision = Math.max(x.integer, y.integer) + scale
  // PostgreSQL's limits for a numeric modifier; beyond them only an unconstrained numeric holds both.
  return precision >= 1 && precision <= 1000 && scale >= -1000 && scale <= 1000 ? `numeric(${precision},${scale})` : 'numeric'
}

/** Integer and fractional digits a number type allows ('any' for an unconstrained numeric); undefined for others. */
function decimalDigits(type: CatalogType): { integer: number; scale: number } | 'any' | undefined {
  const digits = INTEGER_DIGITS.get(type.oid)
  if (digits !== undefined) return { integer: digits, scale: 0 }
  if (type.oid !== OIDS.numeric) return undefined
  if (type.typmod === -1) return 'any'
  const { precision, scale } = numericModifier(type.typmod)
  return { integer: precision - scale, scale }
}

/** Two modifiers of one type: does the `wide` one allow every value the `narrow` one does? */
function modifierHolds(oid: number, wide: number, narrow: number): boolean {
  if (oid === OIDS.numeric) {
    if (wide === -1) return true
    if (narrow === -1) return false
    const w = numericModifier(wide)
    const n = numericModifier(narrow)
    // Integer digits (precision - scale) and fractional digits (scale) both: numeric(12,2) -> numeric(12,4) loses
    // two integer digits, numeric(12,4) -> numeric(14,2) two fractional ones.
    return w.precision - w.scale >= n.precision - n.scale && w.scale >= n.scale
  }
  if (LENGTH_TYPES.has(oid)) {
    if (wide === -1) return true
    return narrow !== -1 && wide >= narrow
  }
  if (PRECISION_TYPES.has(oid)) return (wide === -1 ? 6 : wide) >= (narrow === -1 ? 6 : narrow)
  // interval's modifier holds its fields as well as its precision: only an unconstrained interval holds every other.
  if (oid === OIDS.interval) return wide === -1
  return false
}

/**
 * `numeric(p,s)` is stored as `((p << 16) | (s & 0x7ff)) + 4`; the scale is an 11-bit signed number
 * (PostgreSQL 15 allows a negative scale, and one above the precision).
 */
export function numericModifier(typmod: number): { precision: number; scale: number } {
  const bits = typmod - 4
  return { precision: (bits >> 16) & 0xffff, scale: ((bits & 0x7ff) ^ 1024) - 1024 }
}
