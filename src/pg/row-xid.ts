/**
 * SQL for the full 64-bit id (as numeric) of the transaction that wrote a row, from its 32-bit `xmin` system column
 * and a current 64-bit xid `reference` (numeric SQL expression). A row's xid is at most the reference; when its low
 * 32 bits are larger, it belongs to the previous epoch. Frozen and bootstrap xids (< 3) give 0: older than anything.
 * (Rows more than 2^32 transactions old may be assigned to a later epoch than theirs; they are far older than any
 * snapshot this is compared with either way.)
 */
export function rowXid8Sql(reference: string, alias = ''): string {
  return xid8Sql(reference, `${alias}xmin`)
}

/** The same for any 32-bit `xid` SQL expression (e.g. `pg_stat_activity.backend_xid`). */
export function xid8Sql(reference: string, xid: string): string {
  const low = `${xid}::text::bigint`
  return `(case when ${low} < 3 then 0::numeric
    else (floor(${reference} / 4294967296) - case when ${low} > mod(${reference}, 4294967296) then 1 else 0 end) * 4294967296 + ${low} end)`
}

/** SQL that is true when the row was visible in `snapshot` (a pg_snapshot SQL expression). */
export function rowVisibleInSql(snapshot: string, reference: string, alias = ''): string {
  return `(${alias}xmin::text::bigint < 3 or pg_visible_in_snapshot(${rowXid8Sql(reference, alias)}::text::xid8, ${snapshot}))`
}
