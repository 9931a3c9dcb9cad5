import { sql, type RawBuilder } from 'kysely'

/**
 * The full 64-bit id (as numeric) of the transaction that wrote a row, from its 32-bit `xmin` system column and a
 * current 64-bit xid `reference` (a numeric expression). A row's xid is at most the reference; when its low 32 bits
 * are larger, it belongs to the previous epoch. Frozen and bootstrap xids (< 3) give 0: older than anything.
 * (Rows more than 2^32 transactions old may be assigned to a later epoch than theirs; they are far older than any
 * horizon this is compared with either way.)
 */
export function rowXid8(reference: RawBuilder<unknown>): RawBuilder<number> {
  return xid8Of(reference, sql`xmin`)
}

/** The same for any 32-bit `xid` expression (e.g. `pg_stat_activity.backend_xid`). */
export function xid8Of(reference: RawBuilder<unknown>, xid: RawBuilder<unknown>): RawBuilder<number> {
  const low = sql`${xid}::text::bigint`
  return sql<number>`(case when ${low} < 3 then 0::numeric
    else (floor(${reference} / 4294967296) - case when ${low} > mod(${reference}, 4294967296) then 1 else 0 end) * 4294967296 + ${low} end)`
}
