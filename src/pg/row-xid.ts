import { sql, type RawBuilder } from 'kysely'

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
