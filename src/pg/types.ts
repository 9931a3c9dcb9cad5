/** A column as it flows through a pipeline: its name and the PostgreSQL type that carries it. */
export interface Column {
  readonly name: string
  /** The type as DDL, e.g. `numeric(12,2)`, `timestamp with time zone`, `text[]`. Used to create sink tables. */
  readonly type: string
  /** OID of the column's type in the source database (0 when not from PostgreSQL). */
  readonly typeOid: number
  /** OID of the type values are parsed as: the base type of a domain, the type itself otherwise. */
  readonly parseOid?: number
  /** For arrays: OID of the element type (after domains are resolved). */
  readonly elementOid?: number
  /**
   * For arrays whose elements are not separated by `,`: the element type's `pg_type.typdelim` (`;` for `box`, whose
   * own text holds commas; `:` for PostGIS's geometry). The array's text is read with it; it is written with it too,
   * unless the column is carried as `text[]` (user-defined element types, see docs/types.md), which takes `,`.
   */
  readonly delimiter?: string
  readonly nullable?: boolean
  /**
   * How JS values of this column are written to PostgreSQL. Absent: values are the type map's (strings are the
   * server's text). `json`: values are any JS value, written as JSON text (columns made by `parseJsonb`, ...).
   */
  readonly valueFormat?: 'json'
}

/** Well-known type OIDs from pg_type.dat. */
export const OID = {
  bool: 16,
  bytea: 17,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  float4: 700,
  float8: 701,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const
