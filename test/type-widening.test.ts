import { describe, expect, it } from 'vitest'
import { commonType, numericModifier, typeHolds, type CatalogType } from '../src/sinks/type-widening.js'

// Catalog OIDs (pg_type.dat) and modifiers as pg_attribute.atttypmod stores them.
const int2 = { oid: 21, typmod: -1 }
const int4 = { oid: 23, typmod: -1 }
const int8 = { oid: 20, typmod: -1 }
const text = { oid: 25, typmod: -1 }
const float4 = { oid: 700, typmod: -1 }
const float8 = { oid: 701, typmod: -1 }
const numeric = (precision?: number, scale = 0): CatalogType => ({
  oid: 1700,
  typmod: precision === undefined ? -1 : ((precision << 16) | (scale & 0x7ff)) + 4,
})
const varchar = (length?: number): CatalogType => ({ oid: 1043, typmod: length === undefined ? -1 : length + 4 })
const bpchar = (length: number): CatalogType => ({ oid: 1042, typmod: length + 4 })
const timestamp = (precision?: number): CatalogType => ({ oid: 1114, typmod: precision ?? -1 })
const timestamptz = (precision?: number): CatalogType => ({ oid: 1184, typmod: precision ?? -1 })
const interval = (typmod = -1): CatalogType => ({ oid: 1186, typmod })
const numericArray = (precision: number, scale: number): CatalogType => ({ ...numeric(precision, scale), oid: 1231, elementOid: 1700 })

describe('typeHolds(wide, narrow): every value of narrow is a value of wide', () => {
  it('integers into larger integers and numerics with room for their digits', () => {
    expect(typeHolds(int4, int2)).toBe(true)
    expect(typeHolds(int8, int4)).toBe(true)
    expect(typeHolds(numeric(), int8)).toBe(true)
    expect(typeHolds(numeric(19, 0), int8)).toBe(true)
    expect(typeHolds(numeric(12, 2), int4)).toBe(true)
    expect(typeHolds(numeric(11, 2), int4)).toBe(false)
    expect(typeHolds(numeric(12, -2), int4)).toBe(false) // rounds to hundreds
    expect(typeHolds(int2, int4)).toBe(false)
    expect(typeHolds(int8, numeric())).toBe(false)
  })

  it('numerics with no fewer integer digits and no fewer fractional digits', () => {
    expect(typeHolds(numeric(14, 4), numeric(12, 2))).toBe(true)
    expect(typeHolds(numeric(12, 4), numeric(12, 2))).toBe(false) // 8 integer digits against 10
    expect(typeHolds(numeric(12, 2), numeric(12, 4))).toBe(false)
    expect(typeHolds(numeric(), numeric(12, 4))).toBe(true)
    expect(typeHolds(numeric(1000, 500), numeric())).toBe(false)
    expect(typeHolds(numeric(7, 0), numeric(5, -2))).toBe(true)
  })

  it('longer strings, text for any varchar, finer timestamps, float4 into float8', () => {
    expect(typeHolds(varchar(50), varchar(10))).toBe(true)
    expect(typeHolds(varchar(10), varchar(50))).toBe(false)
    expect(typeHolds(varchar(), varchar(10))).toBe(true)
    expect(typeHolds(text, varchar(10))).toBe(true)
    expect(typeHolds(varchar(), text)).toBe(true)
    expect(typeHolds(varchar(10), text)).toBe(false)
    expect(typeHolds(bpchar(10), bpchar(5))).toBe(true)
    expect(typeHolds(text, bpchar(5))).toBe(false) // the cast drops trailing blanks
    expect(typeHolds(timestamp(6), timestamp(0))).toBe(true)
    expect(typeHolds(timestamp(), timestamp(3))).toBe(true)
    expect(typeHolds(timestamp(3), timestamp())).toBe(false)
    expect(typeHolds(timestamptz(), timestamptz(0))).toBe(true)
    expect(typeHolds(timestamptz(), timestamp())).toBe(false)
    expect(typeHolds(interval(), interval(0x7fff0000 | 3))).toBe(true)
    expect(typeHolds(float8, float4)).toBe(true)
    expect(typeHolds(float4, float8)).toBe(false)
  })

  it('arrays by their elements; a change of kind never', () => {
    expect(typeHolds(numericArray(8, 4), numericArray(6, 2))).toBe(true)
    expect(typeHolds(numericArray(6, 2), numericArray(8, 4))).toBe(false)
    expect(typeHolds(numeric(8, 4), numericArray(6, 2))).toBe(false)
    expect(typeHolds(text, int4)).toBe(false)
    expect(typeHolds(int4, text)).toBe(false)
    expect(typeHolds(float8, numeric())).toBe(false)
    expect(typeHolds({ oid: 3802, typmod: -1 }, { oid: 114, typmod: -1 })).toBe(false) // jsonb, json
  })
})

describe('commonType(a, b): the narrowest type holding both', () => {
  it('numerics get the larger integer digits and the larger scale', () => {
    expect(commonType(numeric(12, 2), numeric(12, 4))).toBe('numeric(14,4)')
    expect(commonType(int4, numeric(5, 2))).toBe('numeric(12,2)')
    expect(commonType(numeric(2, 4), numeric(12, 2))).toBe('numeric(14,4)')
    expect(commonType(numeric(), int8)).toBe('numeric')
    expect(commonType(numeric(1000, 0), numeric(1000, 1000))).toBe('numeric')
    expect(commonType(numericArray(12, 2), numericArray(12, 4))).toBe('numeric(14,4)[]')
  })

  it('nothing for a change of kind', () => {
    expect(commonType(text, int4)).toBeUndefined()
    expect(commonType(float8, numeric(12, 2))).toBeUndefined()
    expect(commonType(numericArray(12, 2), numeric(12, 4))).toBeUndefined()
  })

  it('decodes numeric modifiers with negative scales', () => {
    expect(numericModifier(329730)).toEqual({ precision: 5, scale: -2 })
    expect(numericModifier(786440)).toEqual({ precision: 12, scale: 4 })
  })
})
