import { z } from 'zod'
import type { Connection } from '../../connection/connection.js'
import { parseOptions } from '../../connection/options.js'
import { postgresCheckpoints, type StoredCheckpoint } from '../../checkpoints/postgres.js'
import { ConfigError } from '../../errors.js'
import { warehouseConnection, withConnections } from '../connections.js'
import { EXIT, type ExitCode } from '../exit-codes.js'
import type { Output } from '../output.js'

const storeFlags = {
  to: z.string().optional(),
  checkpointsSchema: z.string().min(1).default('bronze'),
  checkpointsTable: z.string().min(1).default('extraction_checkpoints'),
}

export const listFlagsSchema = z.object({ ...storeFlags, schema: z.string().min(1).optional(), table: z.string().min(1).optional() })
export const resetFlagsSchema = z.object({
  ...storeFlags,
  schema: z.string().min(1).default('public'),
  table: z.string().min(1),
  pipeline: z.string().min(1).optional(),
  yes: z.boolean().default(false),
})

/** `pg-datakit checkpoints list`: where each incremental extraction got to, from the warehouse's store. */
export async function checkpointsListCommand(input: z.input<typeof listFlagsSchema>, output: Output): Promise<ExitCode> {
  const flags = parseOptions(listFlagsSchema, input)
  return withConnections([() => warehouseConnection(flags.to)], async ([warehouse]) => {
    const store = postgresCheckpoints(warehouse as Connection, { schema: flags.checkpointsSchema, table: flags.checkpointsTable })
    const checkpoints = await store.list({ ...(flags.schema ? { schema: flags.schema } : {}), ...(flags.table ? { table: flags.table } : {}) })
    output.result('checkpoints', { store: store.name, checkpoints }, () => describeCheckpoints(checkpoints))
    return EXIT.ok
  })
}

/**
 * `pg-datakit checkpoints reset`: deletes a table's checkpoints (one pipeline's with `--pipeline`), so the next
 * incremental run reads the table from the beginning. Destroys state: without `--yes` it shows what it would delete
 * and refuses (exit 2).
 */
export async function checkpointsResetCommand(input: z.input<typeof resetFlagsSchema>, output: Output): Promise<ExitCode> {
  const flags = parseOptions(resetFlagsSchema, input)
  return withConnections([() => warehouseConnection(flags.to)], async ([warehouse]) => {
    const store = postgresCheckpoints(warehouse as Connection, { schema: flags.checkpointsSchema, table: flags.checkpointsTable })
    const filter = { schema: flags.schema, table: flags.table, ...(flags.pipeline ? { pipeline: flags.pipeline } : {}) }
    if (!flags.yes) {
      const found = await store.list(filter)
      throw new ConfigError(
        '--yes',
        `would delete ${found.length} checkpoint(s) of ${flags.schema}.${flags.table}${flags.pipeline ? ` (pipeline ${flags.pipeline})` : ''}, ` +
          'and the next incremental run would read the whole table again; add --yes to delete them',
      )
    }
    const removed = await store.remove(filter)
    output.result(
      'reset',
      { store: store.name, schema: flags.schema, table: flags.table, pipeline: flags.pipeline ?? null, removed },
      () => `deleted ${removed} checkpoint(s) of ${flags.schema}.${flags.table}${removed ? '; the next incremental run reads from the beginning' : ''}`,
    )
    return EXIT.ok
  })
}

function describeCheckpoints(checkpoints: readonly StoredCheckpoint[]): string {
  if (checkpoints.length === 0) return 'no checkpoints'
  const rows = checkpoints.map(({ key, checkpoint }) => [
    `${key.schema}.${key.table}`,
    key.pipeline,
    checkpoint.cursorColumn,
    checkpoint.value ?? '(none)',
    String(checkpoint.rows),
    checkpoint.updatedAt,
  ])
  return table(['table', 'pipeline', 'cursor', 'value', 'last rows', 'updated'], rows)
}

/** Columns padded to their widest cell. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, index) => Math.max(title.length, ...rows.map((row) => (row[index] ?? '').length)))
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, index) => cell.padEnd(widths[index] ?? 0))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}
