import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { DuckDBConnection } from '@duckdb/node-api'
import type { Checkpoint, CheckpointKey, CheckpointStore } from '../../checkpoints/checkpoint.js'
import { CheckpointConflictError } from '../../errors.js'
import { checkIdentifier, qualifiedName, quoteIdent } from '../../pg/identifiers.js'
import { withDuckDB } from './database.js'

export interface DuckDBCheckpointStore extends CheckpointStore {
  /** The database file's absolute path: the DuckDB sink writing to it commits checkpoints in its own transaction. */
  readonly duckdbPath: string
  /** Writes within the caller's transaction on `connection` (the sink's), so rows and checkpoint commit together. */
  writeWith(connection: DuckDBConnection, key: CheckpointKey, next: Checkpoint, expectedRunId: string | null): Promise<void>
}

/**
 * Checkpoints in a table of a DuckDB database (`bronze.extraction_checkpoints` by default), one row per pipeline;
 * the DuckDB sink writes them in the transaction that commits the rows they cover.
 */
export function duckdbCheckpoints(path: string, options: { schema?: string; table?: string } = {}): DuckDBCheckpointStore {
  const duckdbPath = resolve(path)
  const schema = checkIdentifier(options.schema ?? 'bronze', 'checkpoints.schema')
  const table = qualifiedName(schema, checkIdentifier(options.table ?? 'extraction_checkpoints', 'checkpoints.table'))
  const where = 'source = $1 AND schema_name = $2 AND table_name = $3 AND pipeline = $4'
  const keyValues = (key: CheckpointKey) => [key.source, key.schema, key.table, key.pipeline]

  const ensure = async (connection: DuckDBConnection) => {
    await connection.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`)
    await connection.run(
      `CREATE TABLE IF NOT EXISTS ${table} (source VARCHAR NOT NULL, schema_name VARCHAR NOT NULL, table_name VARCHAR NOT NULL,
        pipeline VARCHAR NOT NULL, run_id VARCHAR NOT NULL, checkpoint JSON NOT NULL, updated_at TIMESTAMPTZ NOT NULL)`,
    )
  }

  const readWith = async (connection: DuckDBConnection, key: CheckpointKey): Promise<Checkpoint | undefined> => {
    const found = await connection.runAndReadAll(`SELECT CAST(checkpoint AS VARCHAR) AS checkpoint FROM ${table} WHERE ${where}`, keyValues(key))
    const text = found.getRowObjectsJS()[0]?.checkpoint
    return typeof text === 'string' ? (JSON.parse(text) as Checkpoint) : undefined
  }

  const writeWith = async (connection: DuckDBConnection, key: CheckpointKey, next: Checkpoint, expectedRunId: string | null) => {
    await ensure(connection)
    const current = await readWith(connection, key)
    // Optimistic concurrency: the checkpoint moves only if it is still the one this run started from.
    if ((current?.runId ?? null) !== expectedRunId) {
      throw new CheckpointConflictError(
        `the checkpoint of ${key.schema}.${key.table} in ${duckdbPath} was moved by run ${current?.runId} since this one started; nothing was written`,
        { step: 'sink', context: { schema: key.schema, table: key.table } },
      )
    }
    await connection.run(`DELETE FROM ${table} WHERE ${where}`, keyValues(key))
    await connection.run(`INSERT INTO ${table} VALUES ($1, $2, $3, $4, $5, $6, $7)`, [...keyValues(key), next.runId, JSON.stringify(next), next.updatedAt])
  }

  const tableExists = async (connection: DuckDBConnection) => {
    const found = await connection.runAndReadAll(`SELECT count(*) AS n FROM duckdb_tables() WHERE schema_name = $1 AND table_name = $2`, [
      schema,
      options.table ?? 'extraction_checkpoints',
    ])
    return Number(found.getRowObjectsJS()[0]?.n) > 0
  }

  return {
    name: `duckdb checkpoints ${duckdbPath} ${table}`,
    duckdbPath,
    writeWith,
    async read(key) {
      // Reading never creates the database file.
      if (!existsSync(duckdbPath)) return undefined
      return withDuckDB(duckdbPath, async (connection) => ((await tableExists(connection)) ? readWith(connection, key) : undefined))
    },
    write: (key, next, expectedRunId) =>
      withDuckDB(duckdbPath, async (connection) => {
        await connection.run('BEGIN TRANSACTION')
        try {
          await writeWith(connection, key, next, expectedRunId)
          await connection.run('COMMIT')
        } catch (error) {
          await connection.run('ROLLBACK').catch(() => undefined)
          throw error
        }
      }),
  }
}
