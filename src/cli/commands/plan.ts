import { z } from 'zod'
import { columnList } from '../flags.js'
import type { Connection } from '../../connection/connection.js'
import { parseOptions } from '../../connection/options.js'
import { NotPartitionedError } from '../../errors.js'
import { parallelSource, partitionedSource, type PlannedSource } from '../../sources/parallel.js'
import type { ExtractionPlan } from '../../sources/plan.js'
import { sourceConnection, withConnections } from '../connections.js'
import { EXIT, type ExitCode } from '../exit-codes.js'
import type { Output } from '../output.js'

const count = z.coerce.number().int().positive()

export const planFlagsSchema = z.object({
  from: z.string().optional(),
  table: z.string().min(1),
  schema: z.string().min(1).default('public'),
  columns: columnList.optional(),
  concurrency: count.default(2),
  pieces: count.optional(),
  keyFrom: z.string().optional(),
  keyTo: z.string().optional(),
})

export type PlanFlags = z.input<typeof planFlagsSchema>

/** `pg-datakit plan`: the JSON plan a parallel read would follow (`extract --plan FILE` reads it back). */
export async function planCommand(input: PlanFlags, output: Output): Promise<ExitCode> {
  const flags = parseOptions(planFlagsSchema, input)
  return withConnections([() => sourceConnection(flags.from)], async ([connection]) => {
    const source = await plannedSource(connection as Connection, flags)
    const plan = await source.plan()
    output.result('plan', { plan }, () => JSON.stringify(plan, null, 2))
    return EXIT.ok
  })
}

/**
 * The planned source for a table: `partitionedSource` for a partitioned table (one piece per leaf, `keyFrom`/`keyTo`
 * keeping partitions that can hold keys in that range), `parallelSource` (ctid page ranges) for a plain one; a saved
 * plan is read as it is.
 */
export async function plannedSource(
  connection: Connection,
  options: {
    schema: string
    table: string
    columns?: string[] | undefined
    concurrency: number
    pieces?: number | undefined
    keyFrom?: string | undefined
    keyTo?: string | undefined
    plan?: ExtractionPlan | undefined
  },
): Promise<PlannedSource> {
  const { concurrency, plan } = options
  if (plan) {
    const given = { schema: plan.schema, table: plan.table, concurrency, plan }
    return plan.kind === 'partitioned' ? partitionedSource(connection, given) : parallelSource(connection, given)
  }
  const common = { schema: options.schema, table: options.table, concurrency, ...(options.columns ? { columns: options.columns } : {}) }
  const ranged = options.keyFrom !== undefined || options.keyTo !== undefined
  const partitioned = partitionedSource(connection, {
    ...common,
    ...(options.keyFrom !== undefined ? { from: options.keyFrom } : {}),
    ...(options.keyTo !== undefined ? { to: options.keyTo } : {}),
  })
  try {
    // Planned once here and handed over, so the run reads exactly the plan it was shown.
    return partitionedSource(connection, { ...common, plan: await partitioned.plan() })
  } catch (error) {
    if (!(error instanceof NotPartitionedError) || ranged) throw error
  }
  const parallel = parallelSource(connection, { ...common, ...(options.pieces ? { pieces: options.pieces } : {}) })
  // A table that does not exist is not partitioned either: its description names the problem (UnknownTableError).
  await parallel.shape()
  return parallelSource(connection, { ...common, plan: await parallel.plan() })
}
