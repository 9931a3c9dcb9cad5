import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { CheckpointConflictError } from '../errors.js'
import { checkIdentifier, qualifiedName, quoteIdent } from '../pg/identifiers.js'
import type { Checkpoint, CheckpointKey, CheckpointStore } from './checkpoint.js'

export interface PostgresCheckpointStore extends CheckpointStore {
  readonly connection: Connection
  /** Writes within the caller's transaction on `client` (the sink's), so data and checkpoint commit together. */
  writeWith(client: pg.ClientBase, key: CheckpointKey, next: Checkpoint, expectedRunId: string | null): Promise<void>
}

/**
 * Checkpoints in a warehouse table (`bronze.extraction_checkpoints` by default, created on first use), one row per
 * source, schema and table. The PostgreSQL sink writes them in the same transaction as the rows they cover.
 */
export function postgresCheckpoints(
  connection: Connection,
  options: { schema?: string; table?: string } = {},
): PostgresCheckpointStore {
  const schema = checkIdentifier(options.schema ?? 'bronze', 'checkpoints.schema')
  const table = checkIdentifier(options.table ?? 'extraction_checkpoints', 'checkpoints.table')
  const target = qualifiedName(schema, table)

  const ensure = async (client: pg.ClientBase) => {
    await client.query(`create schema if not exists ${quoteIdent(schema)}`)
    await client.query(`create table if not exists ${target} (
      source text not null, schema_name text not null, table_name text not null,
      cursor_column text not null, cursor_value text, lower_value text, snapshot text not null,
      run_id text not null, rows bigint not null, status text not null,
      started_at timestamptz not null, updated_at timestamptz not null,
      primary key (source, schema_name, table_name))`)
  }

  const writeWith = async (client: pg.ClientBase, key: CheckpointKey, next: Checkpoint, expectedRunId: string | null) => {
    await ensure(client)
    // Optimistic concurrency: the row moves only if it is still the one this run started from.
    const result = await client.query(
      `insert into ${target} as c (source, schema_name, table_name, cursor_column, cursor_value, lower_value, snapshot, run_id, rows, status, started_at, updated_at)
       select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
        where $13::text is null
       on conflict (source, schema_name, table_name) do nothing`,
      [key.source, key.schema, key.table, next.cursorColumn, next.value, next.lower, next.snapshot, next.runId, next.rows, next.status, next.startedAt, next.updatedAt, expectedRunId],
    )
    if (result.rowCount === 1) return
    const updated = await client.query(
      `update ${target} set cursor_column = $4, cursor_value = $5, lower_value = $6, snapshot = $7, run_id = $8, rows = $9,
              status = $10, started_at = $11, updated_at = $12
        where source = $1 and schema_name = $2 and table_name = $3 and run_id is not distinct from $13`,
      [key.source, key.schema, key.table, next.cursorColumn, next.value, next.lower, next.snapshot, next.runId, next.rows, next.status, next.startedAt, next.updatedAt, expectedRunId],
    )
    if (updated.rowCount !== 1) {
      throw new CheckpointConflictError(
        `the checkpoint of ${key.schema}.${key.table} was moved by another run since this one started; nothing was written`,
        { step: 'sink', context: { schema: key.schema, table: key.table } },
      )
    }
  }

  return {
    name: `postgres checkpoints ${schema}.${table}`,
    connection,
    writeWith,
    async read(key) {
      const exists = await connection.query<{ found: boolean }>(`select to_regclass($1) is not null as found`, [target])
      if (!exists.rows[0]?.found) return undefined
      const { rows } = await connection.query<Record<string, string | null>>(
        `select cursor_column, cursor_value, lower_value, snapshot, run_id, rows::text as rows, status,
                started_at::text as started_at, updated_at::text as updated_at
           from ${target} where source = $1 and schema_name = $2 and table_name = $3`,
        [key.source, key.schema, key.table],
      )
      const row = rows[0]
      if (!row) return undefined
      return {
        cursorColumn: row.cursor_column as string,
        value: row.cursor_value ?? null,
        lower: row.lower_value ?? null,
        snapshot: row.snapshot as string,
        runId: row.run_id as string,
        rows: Number(row.rows),
        status: 'committed',
        startedAt: row.started_at as string,
        updatedAt: row.updated_at as string,
      }
    },
    async write(key, next, expectedRunId) {
      await connection.withClient(async (client) => {
        await client.query('begin')
        try {
          await writeWith(client, key, next, expectedRunId)
          await client.query('commit')
        } catch (error) {
          await client.query('rollback').catch(() => undefined)
          throw error
        }
      })
    },
  }
}
