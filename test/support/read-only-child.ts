/**
 * Extracts a table into parquetSink({ dir }) and prints the error's code (or WROTE): run as an unprivileged user by
 * the read-only directory test when the suite runs as root, for whom a directory's mode means nothing.
 *   node --import tsx test/support/read-only-child.ts <sourceUrl> <table> <dir>
 */
import { connect, copySource, extract } from '../../src/index.js'
import { parquetSink } from '../../src/parquet.js'

const [sourceUrl, table, dir] = process.argv.slice(2) as [string, string, string]
const source = connect(sourceUrl)
try {
  await extract({ from: copySource(source, { table }), to: parquetSink({ dir }) })
  console.log('WROTE')
} catch (error) {
  console.log((error as { code?: string }).code)
} finally {
  await source.close()
}
