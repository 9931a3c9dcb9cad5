// pg-datakit/duckdb: the DuckDB sink. Needs the optional peer dependency @duckdb/node-api.
export { duckdbSink, type DuckDBSinkOptions } from './sinks/duckdb/sink.js'
export { duckdbCheckpoints, type DuckDBCheckpointStore } from './sinks/duckdb/checkpoints.js'
export { duckColumn, type DuckColumn } from './sinks/duckdb/types.js'
