import { z } from 'zod'
import type { Connection } from '../../connection/connection.js'
import { parseOptions } from '../../connection/options.js'
import { dropSlot, slotStatus, type SlotStatus } from '../../cdc/slots.js'
import { classifyError, ConfigError, SourceQueryError } from '../../errors.js'
import { sourceConnection, withConnections } from '../connections.js'
import { EXIT, type ExitCode } from '../exit-codes.js'
import type { Output } from '../output.js'
import { table } from './checkpoints.js'

export const statusFlagsSchema = z.object({ from: z.string().optional(), name: z.string().min(1).optional() })
export const dropFlagsSchema = z.object({ from: z.string().optional(), name: z.string().min(1), yes: z.boolean().default(false) })

/** `pg-datakit slots status [NAME]`: the source server's replication slots (one, or all), with their lag. */
export async function slotsStatusCommand(input: z.input<typeof statusFlagsSchema>, output: Output): Promise<ExitCode> {
  const flags = parseOptions(statusFlagsSchema, input)
  return withConnections([() => sourceConnection(flags.from)], async ([connection]) => {
    const source = connection as Connection
    const names = flags.name ? [flags.name] : await slotNames(source)
    const slots: SlotStatus[] = []
    for (const name of names) {
      const status = await slotStatus(source, name).catch((error: unknown) => Promise.reject(classifyError(error, 'source', { slot: name }, SourceQueryError)))
      if (status) slots.push(status)
      else throw new ConfigError('name', `no replication slot "${name}" on ${source.label}; \`pg-datakit slots status\` lists them`)
    }
    output.result('slots', { slots }, () => describeSlots(slots))
    return EXIT.ok
  })
}

/**
 * `pg-datakit slots drop NAME`: drops a replication slot, so the server frees the WAL it keeps; a capture that used it
 * cannot continue without a new snapshot (docs/cdc.md). Without `--yes` it shows the slot and refuses (exit 2).
 */
export async function slotsDropCommand(input: z.input<typeof dropFlagsSchema>, output: Output): Promise<ExitCode> {
  const flags = parseOptions(dropFlagsSchema, input)
  return withConnections([() => sourceConnection(flags.from)], async ([connection]) => {
    const source = connection as Connection
    const context = { slot: flags.name }
    const status = await slotStatus(source, flags.name).catch((error: unknown) => Promise.reject(classifyError(error, 'source', context, SourceQueryError)))
    if (!flags.yes) {
      throw new ConfigError(
        '--yes',
        status
          ? `would drop replication slot "${flags.name}" (${status.active ? 'active' : 'inactive'}, ${status.retainedBytes} bytes of WAL kept); a capture using it would have to start again from a snapshot; add --yes to drop it`
          : `there is no replication slot "${flags.name}" to drop`,
      )
    }
    if (status) await dropSlot(source, flags.name).catch((error: unknown) => Promise.reject(classifyError(error, 'source', context, SourceQueryError)))
    output.result('dropped', { slot: flags.name, dropped: status !== undefined }, () =>
      status ? `dropped replication slot "${flags.name}"` : `no replication slot "${flags.name}": nothing to drop`,
    )
    return EXIT.ok
  })
}

async function slotNames(source: Connection): Promise<string[]> {
  try {
    const { rows } = await source.query<{ name: string }>('select slot_name as name from pg_replication_slots order by slot_name')
    return rows.map((row) => row.name)
  } catch (error) {
    throw classifyError(error, 'source', {}, SourceQueryError)
  }
}

function describeSlots(slots: readonly SlotStatus[]): string {
  if (slots.length === 0) return 'no replication slots'
  return table(
    ['slot', 'plugin', 'database', 'active', 'wal status', 'lag bytes', 'retained bytes', 'confirmed'],
    slots.map((slot) => [
      slot.name,
      slot.plugin,
      slot.database ?? '',
      slot.active ? 'yes' : 'no',
      slot.walStatus ?? '',
      String(slot.lagBytes),
      String(slot.retainedBytes),
      slot.confirmedFlushLsn ?? '',
    ]),
  )
}
