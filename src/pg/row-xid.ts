import { sql, type RawBuilder } from 'kysely'

/**
 * The full 64-bit id (as numeric) of a 32-bit `xid` expression (e.g. `pg_stat_activity.backend_xid`), given a current
 * 64-bit xid `reference` (a numeric expression): the most recent xid at or before the reference with those low bits.
 * Frozen and bootstrap xids (< 3) give 0: older than anything.
 */
export function xid8Of(reference: RawBuilder<unknown>, xid: RawBuilder<unknown>): RawBuilder<number> {
  const low = sql`${xid}::text::bigint`
  return sql<number>`(case when ${low} < 3 then 0::numeric
    else (floor(${reference} / 4294967296) - case when ${low} > mod(${reference}, 4294967296) then 1 else 0 end) * 4294967296 + ${low} end)`
}

/**
 * How many transaction ids before `reference` (a full 64-bit xid) the transaction that wrote a row began: its 32-bit
 * `xmin` read as the most recent xid at or before the reference with those low bits. Plain bigint arithmetic (a table
 * scan evaluates it per row: about twice as fast as building the full xid as numeric). Frozen and bootstrap xids (< 3)
 * are older than anything. A row is at or above a horizon `h` when its distance is at most `reference - h`.
 * (Rows more than 2^32 transactions old, kept with their raw xmin when frozen, may look younger; they are far older
 * than any horizon this is compared with unless that many transactions ran between two runs.)
 */
export function rowXidDistance(reference: bigint): RawBuilder<number> {
  const low = reference % 4294967296n
  return sql<number>`(case when xmin::text::bigint < 3 then ${sql.lit(9223372036854775807n)}
    else (${sql.lit(low)}::bigint - xmin::text::bigint + 4294967296) % 4294967296 end)`
}
