import type pg from 'pg'
import type { Column } from './types.js'

/**
 * When a column's binary COPY form is the same value in the warehouse. A binary form is read by the column's own
 * type's receive function, with no conversion: `int4` bytes into an `int8` column fail, an enum's into `text`
 * happen to pass, a composite's or an array's carry type OIDs of the source database. So the byte path goes binary
 * only where every column is a built-in type (OIDs below 10000, the same in every PostgreSQL) that lands as that very
 * type (typmods may differ: receive functions apply the column's), and text everywhere else: enums, domains,
 * composites, extension types and arrays of them, which the warehouse holds as `text`, `text[]` or a base type.
 */
const FIRST_USER_OID = 10_000

/**
 * Built-in types whose values are OIDs of the source database's objects (regclass, regtype, ...): their text names
 * the object and is looked up again by the warehouse, their binary form would carry a number that means something
 * else there. Arrays of them too.
 */
const OID_VALUED = new Set([24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 4191, 1008, 2207, 2208, 2209, 2210, 2211, 3735, 3770, 4090, 4097, 4192])

/** Why a column's type has no binary form the warehouse can take as the same value, judged by its OIDs alone. */
function typeRefusal(column: Column): string | undefined {
  const oids = [column.typeOid, ...(column.elementOid === undefined ? [] : [column.elementOid])]
  if (oids.some((oid) => oid === 0 || oid >= FIRST_USER_OID)) {
    return `column "${column.name}" has a type of the source database's own (oid ${column.typeOid}), carried as ${column.type}`
  }
  if (oids.some((oid) => OID_VALUED.has(oid))) return `column "${column.name}" (${column.type}) holds OIDs of the source database`
  return undefined
}

/**
 * The source's side, asked on its connection: its server version, and why its rows cannot go binary (a column
 * type judged above, or one without binary send and receive functions, such as `aclitem`), or undefined.
 */
export async function binarySourceCheck(
  client: pg.ClientBase,
  columns: readonly Column[],
): Promise<{ readonly serverVersion: number; readonly refused: string | undefined }> {
  const { rows } = await client.query<{ version: number; missing: string | null }>(
    `select current_setting('server_version_num')::int as version,
            (select x.name from unnest($1::text[], $2::oid[], $3::oid[]) with ordinality as x(name, oid, element, ord)
               join pg_type t on t.oid = x.oid left join pg_type e on e.oid = x.element
              where t.typsend = 0 or t.typreceive = 0 or e.typsend = 0 or e.typreceive = 0
              order by x.ord limit 1) as missing`,
    [columns.map((column) => column.name), columns.map((column) => column.typeOid), columns.map((column) => column.elementOid ?? null)],
  )
  const serverVersion = rows[0]?.version as number
  for (const column of columns) {
    const refused = typeRefusal(column)
    if (refused) return { serverVersion, refused }
  }
  const missing = rows[0]?.missing
  return { serverVersion, refused: missing == null ? undefined : `column "${missing}" has a type without a binary form` }
}

/** `130004` -> `13`, `90624` -> `9.6`. */
const major = (version: number): string =>
  version >= 100_000 ? String(Math.floor(version / 10_000)) : `${Math.floor(version / 10_000)}.${Math.floor(version / 100) % 100}`

/**
 * The warehouse's side, asked in the sink's transaction on the table it copies into: why the copied columns cannot
 * land binary, or undefined. `existing`: the columns of a table that already exists (append), by name, with their
 * type OIDs; a freshly made table has the stream's types by construction, checked by resolving their names here.
 */
export async function binaryLandingCheck(
  client: pg.ClientBase,
  columns: readonly Column[],
  sourceVersion: number,
  table?: string,
): Promise<string | undefined> {
  for (const column of columns) {
    const refused = typeRefusal(column)
    if (refused) return refused
  }
  const { rows } = await client.query<{ version: number; name: string | null; landed: string | null }>(
    `select current_setting('server_version_num')::int as version, m.name, m.landed
       from (select 1) one
       left join lateral (
         select x.name, format_type(coalesce(a.atttypid, x.type::regtype::oid), a.atttypmod) as landed
           from unnest($1::text[], $2::text[], $3::oid[]) with ordinality as x(name, type, oid, ord)
           left join pg_attribute a on $4::regclass is not null and a.attrelid = $4::regclass and a.attname = x.name and not a.attisdropped
          where coalesce(a.atttypid, x.type::regtype::oid) <> x.oid
          order by x.ord limit 1) m on true`,
    [columns.map((column) => column.name), columns.map((column) => column.type), columns.map((column) => column.typeOid), table ?? null],
  )
  const row = rows[0] as { version: number; name: string | null; landed: string | null }
  if (row.name !== null) return `column "${row.name}" lands as ${row.landed}, not as its source type`
  // Receive functions read what servers of their own and older major versions send; an older warehouse may not read
  // a newer source's forms, and before PostgreSQL 10 timestamps could be floats.
  if (sourceVersion < 100_000 || row.version < 100_000) {
    return `binary COPY needs PostgreSQL 10 or later on both sides (source ${major(sourceVersion)}, warehouse ${major(row.version)})`
  }
  if (Math.floor(sourceVersion / 10_000) > Math.floor(row.version / 10_000)) {
    return `the source server (PostgreSQL ${major(sourceVersion)}) is newer than the warehouse (${major(row.version)}), which may not read its binary forms`
  }
  return undefined
}
