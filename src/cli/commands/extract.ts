import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { columnList } from '../flags.js'
import type { Connection } from '../../connection/connection.js'
import { parseOptions } from '../../connection/options.js'
import type { Source } from '../../contracts.js'
import { ConfigError } from '../../errors.js'
import { extract } from '../../extract.js'
import type { RunReport } from '../../pipeline/report.js'
import { postgresSink } from '../../sinks/postgres.js'
import { copySource } from '../../sources/copy.js'
import { incrementalSource } from '../../sources/incremental.js'
import type { ExtractionPlan } from '../../sources/plan.js'
import { bronzeMetadata } from '../../transforms/bronze-metadata.js'
import { sourceConnection, warehouseConnection, withConnections } from '../connections.js'
import { EXIT, type ExitCode } from '../exit-codes.js'
import type { Output } from '../output.js'
import { plannedSource } from './plan.js'

const count = z.coerce.number().int().positive()

/** The extract command's flags as commander hands them over, checked once (zod: a ConfigError names the flag). */
export const extractFlagsSchema = z.object({
  from: z.string().optional(),
  to: z.string().optional(),
  table: z.string().min(1),
  schema: z.string().min(1).default('public'),
  columns: columnList.optional(),
  mode: z.enum(['replace', 'append', 'merge']).optional(),
  incremental: z.string().min(1).optional(),
  lookback: z.string().min(1).optional(),
  copyFormat: z.enum(['auto', 'binary', 'text']).default('auto'),
  targetSchema: z.string().min(1).optional(),
  targetTable: z.string().min(1).optional(),
  concurrency: count.optional(),
  plan: z.string().min(1).optional(),
  retries: z.coerce.number().int().min(0).max(10).default(2),
  runId: z.string().min(1).optional(),
})

export type ExtractFlags = z.input<typeof extractFlagsSchema>

/**
 * `pg-datakit extract`: one table into bronze, `COPY` to `COPY` with bronze metadata; `--incremental COL` reads only
 * rows new or changed since the last run (checkpoints in the warehouse), `--concurrency N` or `--plan FILE` reads in
 * pieces under one snapshot.
 */
export async function extractCommand(input: ExtractFlags, output: Output, signal: AbortSignal): Promise<ExitCode> {
  const flags = parseOptions(extractFlagsSchema, input)
  // Without --mode: an incremental run merges (replace would keep only the last delta), a full one replaces.
  const mode = flags.mode ?? (flags.incremental ? 'merge' : 'replace')
  if (flags.incremental && (flags.concurrency !== undefined || flags.plan)) {
    throw new ConfigError('--incremental', 'reads one snapshot on one connection: leave out --concurrency and --plan')
  }
  if (flags.lookback && !flags.incremental) throw new ConfigError('--lookback', 'applies to --incremental runs only')
  const plan = flags.plan ? await readPlan(flags.plan) : undefined
  return withConnections([() => sourceConnection(flags.from), () => warehouseConnection(flags.to)], async ([source, warehouse]) => {
    const from = await sourceFor(source as Connection, flags, plan)
    const to = postgresSink(warehouse as Connection, {
      mode,
      ...(flags.targetSchema ? { schema: flags.targetSchema } : {}),
      ...(flags.targetTable ? { table: flags.targetTable } : {}),
    })
    output.event('start', { source: from.name, from: (source as Connection).label, to: (warehouse as Connection).label, mode })
    const report = await extract({
      from,
      through: [bronzeMetadata()],
      to,
      signal,
      copyFormat: flags.copyFormat,
      retry: { attempts: flags.retries + 1 },
      logger: output.logger,
      onProgress: (progress) => output.progress(progress),
      ...(flags.runId ? { runId: flags.runId } : {}),
    })
    output.result('report', report, () => describeReport(report))
    return EXIT.ok
  })
}

async function sourceFor(connection: Connection, flags: z.output<typeof extractFlagsSchema>, plan: ExtractionPlan | undefined): Promise<Source> {
  const { schema, table, columns } = flags
  if (flags.incremental) {
    return incrementalSource(connection, {
      schema,
      table,
      cursorColumn: flags.incremental,
      ...(columns ? { columns } : {}),
      ...(flags.lookback ? { lookback: flags.lookback } : {}),
    })
  }
  if (flags.concurrency !== undefined || plan) {
    return plannedSource(connection, { schema, table, columns, concurrency: flags.concurrency ?? 2, plan })
  }
  return copySource(connection, { schema, table, ...(columns ? { columns } : {}) })
}

/** A plan file: what `pg-datakit plan` printed, the plan itself or its JSON line (`{"event":"plan","plan":...}`). */
async function readPlan(path: string): Promise<ExtractionPlan> {
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'))
  } catch (error) {
    throw new ConfigError('--plan', `cannot read a JSON plan from ${path}: ${(error as Error).message}`)
  }
  const plan = (parsed as { event?: unknown; plan?: unknown } | null)?.event === 'plan' ? (parsed as { plan: unknown }).plan : parsed
  if ((plan as Partial<ExtractionPlan> | null)?.version !== 1 || !Array.isArray((plan as Partial<ExtractionPlan>).pieces)) {
    throw new ConfigError('--plan', `${path} holds no extraction plan (version 1 with pieces); make one with \`pg-datakit plan\``)
  }
  return plan as ExtractionPlan
}

const number = new Intl.NumberFormat('en-US')

/** The terminal's summary of a run. */
export function describeReport(report: RunReport): string {
  const seconds = report.durationMs / 1000
  const lines = [
    `${number.format(report.rows)} rows into ${report.target} in ${seconds.toFixed(1)} s (${number.format(report.rowsPerSecond)} rows/s, ` +
      `${(report.bytes / 1e6).toFixed(1)} MB, ${(seconds > 0 ? report.bytes / 1e6 / seconds : 0).toFixed(1)} MB/s, ` +
      `${report.path}${report.copyFormat ? ` ${report.copyFormat}` : ''})`,
  ]
  if (report.copyFormatReason) lines.push(`  text COPY because ${report.copyFormatReason}`)
  if (report.checkpoint)
    lines.push(`  checkpoint ${report.checkpoint.previous ?? '(none)'} -> ${report.checkpoint.value ?? '(none)'} in ${report.checkpoint.store}`)
  for (const [counter, value] of Object.entries(report.counters)) lines.push(`  ${counter}: ${number.format(value)}`)
  lines.push(`  run ${report.runId}`)
  return lines.join('\n')
}
