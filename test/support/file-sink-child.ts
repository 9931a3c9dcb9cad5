/**
 * Runs pipelines into the DuckDB and Parquet sinks in a loop until killed (the SIGKILL tests), printing "started" and
 * "finished" around each round.
 *   node --import tsx test/support/file-sink-child.ts <sourceUrl> <duckdbPath> <parquetDir> <table> replace|incremental
 */
import { connect, extract, incrementalSource, copySource, bronzeMetadata } from '../../src/index.js'
import { duckdbSink } from '../../src/duckdb.js'
import { parquetSink } from '../../src/parquet.js'

const [sourceUrl, path, dir, table, kind] = process.argv.slice(2) as [string, string, string, string, string]
const source = connect(sourceUrl)
const from = kind === 'incremental' ? incrementalSource(source, { table, cursorColumn: 'c', batchSize: 100 }) : copySource(source, { table })
for (;;) {
  process.stdout.write('started\n')
  if (kind === 'incremental') {
    await extract({ from, through: [bronzeMetadata()], to: duckdbSink({ path, mode: 'append', table: `${table}_append` }), retry: false })
    await extract({ from, to: duckdbSink({ path, mode: 'merge', table: `${table}_merge` }), retry: false })
    await extract({ from, to: parquetSink({ dir, mode: 'append', table: `${table}_append` }), retry: false })
  } else {
    await extract({ from, through: [bronzeMetadata()], to: duckdbSink({ path }), retry: false })
    await extract({ from, through: [bronzeMetadata()], to: parquetSink({ dir }), retry: false })
  }
  process.stdout.write('finished\n')
}
