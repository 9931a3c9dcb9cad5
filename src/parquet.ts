// pg-datakit/parquet: the Parquet sink (written through DuckDB). Needs the optional peer dependency @duckdb/node-api.
export { parquetSink, type ParquetSinkOptions } from './sinks/parquet/sink.js'
export { parquetCheckpoints, type ParquetCheckpointStore } from './sinks/parquet/checkpoints.js'
export type { ParquetManifest } from './sinks/parquet/manifest.js'
