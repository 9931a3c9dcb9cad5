import { Command, CommanderError, Option } from 'commander'
import { redact } from '../connection/redact.js'
import { version } from '../../package.json'
import { checkpointsListCommand, checkpointsResetCommand } from './commands/checkpoints.js'
import { extractCommand } from './commands/extract.js'
import { planCommand } from './commands/plan.js'
import { slotsDropCommand, slotsStatusCommand } from './commands/slots.js'
import { EXIT, exitCodeOf, type ExitCode } from './exit-codes.js'
import { createOutput, type Output, type OutputStreams } from './output.js'

export interface CliEnvironment extends OutputStreams {
  /** Aborts a running extraction (SIGINT, SIGTERM). */
  readonly signal: AbortSignal
}

const from = () => new Option('--from <url>', 'source database URL (default: $SOURCE_DATABASE_URL)')
const to = () => new Option('--to <url>', 'warehouse database URL (default: $WAREHOUSE_DATABASE_URL)')
const json = () => new Option('--json', 'one JSON object per line on stdout (the default when stdout is not a terminal)')
/** Where the checkpoint store is (`postgresCheckpoints()`'s schema and table), for the checkpoints commands. */
const checkpointsSchema = () => new Option('--checkpoints-schema <name>', 'schema of the checkpoint store').default('bronze')
const checkpointsTable = () => new Option('--checkpoints-table <name>', 'table of the checkpoint store').default('extraction_checkpoints')

/**
 * Runs the CLI on `argv` (as `process.argv`: node, script, arguments...) and resolves with the exit code. Every
 * failure is printed (a JSON line, or a line on stderr) and turned into its code (src/cli/exit-codes.ts); nothing
 * throws out of here.
 */
export async function runCli(argv: readonly string[], environment: CliEnvironment): Promise<ExitCode> {
  const { stdout, stderr, signal } = environment
  let output: Output | undefined
  let exitCode: ExitCode = EXIT.ok
  /** The output mode is known once the options are parsed: `--json`, or stdout is not a terminal. */
  const outputFor = (options: { json?: boolean }) => (output = createOutput(options.json === true || !stdout.isTTY, { stdout, stderr }))
  const run =
    <O>(command: (options: O, output: Output) => Promise<ExitCode>) =>
    async (options: O & { json?: boolean }) => {
      exitCode = await command(options, outputFor(options))
    }

  const program = new Command('pg-datakit')
    .description('Move tables out of PostgreSQL into the bronze layer of a PostgreSQL warehouse, and look after what that keeps.')
    .version(version)
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({
      writeOut: (text) => stdout.write(redact(text)),
      writeErr: (text) => stderr.write(redact(text)),
    })

  program
    .command('extract')
    .description('copy a table into bronze.br_<table> (full, or incremental by a cursor column)')
    .addOption(from())
    .addOption(to())
    .requiredOption('--table <name>', 'source table')
    .option('--schema <name>', 'source schema', 'public')
    .option('--columns <list>', 'only these columns, comma-separated')
    .addOption(
      new Option(
        '--mode <mode>',
        'what the run does with the bronze table: replace, append or merge (default: merge with --incremental, else replace)',
      ).choices(['replace', 'append', 'merge']),
    )
    .option('--incremental <column>', 'read only rows new or changed since the last run, by this cursor column (checkpoints in the warehouse)')
    .option('--lookback <interval>', 'with --incremental: bound the search for late rows, e.g. "10 minutes" (docs/incremental.md)')
    .addOption(new Option('--copy-format <format>', 'COPY format of the byte path').choices(['auto', 'binary', 'text']).default('auto'))
    .option('--target-schema <name>', 'warehouse schema (default: bronze)')
    .option('--target-table <name>', 'warehouse table (default: br_<table>)')
    .option('--concurrency <n>', 'read in pieces on this many connections under one snapshot (parallel or partitioned read)')
    .option('--plan <file>', 'read exactly the pieces of a plan made by `pg-datakit plan`')
    .option('--retries <n>', 'run again this many times after a failure that committed nothing', '2')
    .option('--run-id <id>', 'the run id recorded in bronze metadata and the report (default: a random UUID)')
    .addOption(json())
    .action(run(extractCommandWith(signal)))

  const checkpoints = program.command('checkpoints').description('list or reset the checkpoints of incremental extractions')
  checkpoints
    .command('list')
    .description("show where each incremental extraction got to (the warehouse's checkpoint store)")
    .addOption(to())
    .option('--schema <name>', 'only checkpoints of tables in this source schema')
    .option('--table <name>', 'only checkpoints of this source table')
    .addOption(checkpointsSchema())
    .addOption(checkpointsTable())
    .addOption(json())
    .action(run(checkpointsListCommand))
  checkpoints
    .command('reset')
    .description("delete a table's checkpoints: its next incremental run reads it from the beginning (needs --yes)")
    .addOption(to())
    .requiredOption('--table <name>', 'source table')
    .option('--schema <name>', 'source schema', 'public')
    .option('--pipeline <id>', "only this pipeline's checkpoint (the `pipeline` column of `checkpoints list`)")
    .addOption(checkpointsSchema())
    .addOption(checkpointsTable())
    .option('--yes', 'really delete them')
    .addOption(json())
    .action(run(checkpointsResetCommand))

  const slots = program.command('slots').description("show or drop the source server's replication slots")
  slots
    .command('status')
    .description('show replication slots (all, or one) with their lag and retained WAL')
    .argument('[name]', 'slot name')
    .addOption(from())
    .addOption(json())
    .action(async (name: string | undefined, options: { from?: string; json?: boolean }) => {
      exitCode = await slotsStatusCommand({ ...options, ...(name ? { name } : {}) }, outputFor(options))
    })
  slots
    .command('drop')
    .description('drop a replication slot, freeing the WAL it keeps (needs --yes)')
    .argument('<name>', 'slot name')
    .addOption(from())
    .option('--yes', 'really drop it')
    .addOption(json())
    .action(async (name: string, options: { from?: string; yes?: boolean; json?: boolean }) => {
      exitCode = await slotsDropCommand({ ...options, name }, outputFor(options))
    })

  program
    .command('plan')
    .description('print the JSON plan of a parallel (plain table) or partitioned read; `extract --plan FILE` follows it')
    .addOption(from())
    .requiredOption('--table <name>', 'source table')
    .option('--schema <name>', 'source schema', 'public')
    .option('--columns <list>', 'only these columns, comma-separated')
    .option('--concurrency <n>', 'connections the read will use', '2')
    .option('--pieces <n>', 'pieces a plain table is cut into (default: 4 per connection)')
    .option('--key-from <value>', 'partitioned tables: keep partitions that can hold partition keys >= this')
    .option('--key-to <value>', 'partitioned tables: keep partitions that can hold partition keys < this')
    .addOption(json())
    .action(run(planCommand))

  try {
    await program.parseAsync([...argv])
    return exitCode
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and --version end the parse with a "success" error; anything else commander refused is a usage error,
      // which commander has printed on stderr; scripts get it as a JSON line too.
      if (error.exitCode === 0) return EXIT.ok
      if (!stdout.isTTY || argv.includes('--json')) {
        createOutput(true, { stdout, stderr }).failure(new UsageError(error.message.replace(/^error: /, '')), EXIT.usage)
      }
      return EXIT.usage
    }
    const code = exitCodeOf(error)
    ;(output ?? createOutput(!stdout.isTTY, { stdout, stderr })).failure(error, code)
    return code
  }
}

/** A command line commander refused (an unknown option, a missing argument, a value not among the choices). */
class UsageError extends Error {
  readonly code = 'USAGE'
  override readonly name = 'UsageError'
}

function extractCommandWith(signal: AbortSignal) {
  return (options: Parameters<typeof extractCommand>[0] & { json?: boolean }, output: Output) => extractCommand(options, output, signal)
}
