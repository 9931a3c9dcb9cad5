/**
 * The file-sink cases of `npm run bench` (issue #18): the bench's table into DuckDB and into Parquet, each against its
 * own limit measured in the same run (bench/file-sinks-case.mjs runs them). Registered in copy.bench.ts.
 */
export const FILE_SINK_CASES = {
  duckdb: '(k) duckdbSink (replace) + bronze',
  'duckdb-limit': '(k2) limit: psql csv + DuckDB read_csv',
  parquet: '(l) parquetSink + bronze',
  'parquet-limit': '(l2) limit: psql csv + DuckDB to Parquet',
} as const

export type FileSinkCase = keyof typeof FILE_SINK_CASES

/** The case each sink is measured against ("x limit"). */
export const FILE_SINK_LIMIT_OF = { duckdb: 'duckdb-limit', parquet: 'parquet-limit' } as const

/** Targets: at most 1.5x the limit, at most 300 MB peak RSS (the process runs DuckDB in the sinks and their limits alike). */
const RATIO_TARGET = 1.5
const RSS_TARGET_MB = 300

/** PASS/FAIL verdicts for a file-sink case's line of the report; none for other cases. */
export function fileSinkVerdicts(name: string, ratio: number | null, peakRssMb: number | null): string[] {
  if (!(name in FILE_SINK_CASES)) return []
  const rss = peakRssMb === null ? [] : [`RSS ${peakRssMb} <= ${RSS_TARGET_MB} MB ${peakRssMb <= RSS_TARGET_MB ? 'PASS' : 'FAIL'}`]
  if (!(name in FILE_SINK_LIMIT_OF)) return rss
  return [`x limit <= ${RATIO_TARGET.toFixed(2)} ${ratio !== null && ratio <= RATIO_TARGET ? 'PASS' : 'FAIL'}`, ...rss]
}
