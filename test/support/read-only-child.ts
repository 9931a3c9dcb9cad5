/**
 * Extracts a table into parquetSink({ dir }) and prints the error's code (or WROTE), as an unprivileged user: the read-only
 * directory test runs it when the suite runs as root, for whom a directory's mode means nothing. It is started as root
 * and gives up root once its modules are loaded (the checkout may be in a directory only root can read, as `mktemp -d`
 * makes it).
 *   node --import tsx test/support/read-only-child.ts <sourceUrl> <table> <dir> <user>
 */
import { connect, copySource, extract } from '../../src/index.js'
import { parquetSink } from '../../src/parquet.js'

const [sourceUrl, table, dir, user] = process.argv.slice(2) as [string, string, string, string]
process.setgroups?.([])
process.setgid?.(user)
process.setuid?.(user)
const source = connect(sourceUrl)
try {
  await extract({ from: copySource(source, { table }), to: parquetSink({ dir }) })
  console.log('WROTE')
} catch (error) {
  console.log((error as { code?: string }).code)
  if (process.env.DEBUG_CHILD) console.error(error)
} finally {
  await source.close()
}
