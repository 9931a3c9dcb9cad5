import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { CheckpointConflictError } from '../errors.js'
import { checkIdentifier, qualifiedName, quoteIdent } from '../pg/identifiers.js'
import { ensureSchema, lockForDdl } from '../sinks/warehouse-ddl.js'
import type { Checkpoint, CheckpointKey, CheckpointStore } from './checkpoint.js'

export interface PostgresCheckpointStore extends CheckpointStore {
  readonly connection: Connection
  /** Writes within the caller's transaction on `client` (the sink's), so data and checkpoint commit together. */
  writeWith(client: pg.ClientBase, key: CheckpointKey, next: Checkpoint, expectedRunId: string | null): Promise<void>
  /** The stored checkpoints, with their keys, of one table or all (none when the store's table does not exist yet). */
  list(filter?: CheckpointFilter): Promise<StoredCheckpoint[]>
  /**
   * Deletes the checkpoints of a table (of one pipeline when `pipeline` is given), so its next incremental run reads
   * from the beginning; returns how many were deleted. A run in flight fails with `CheckpointConflictError`.
   */
  remove(filter: CheckpointFilter & { readonly table: string }): Promise<number>
}

/** Which stored checkpoints to list or remove: every field given must match. */
export interface CheckpointFilter {
  readonly schema?: string
  readonly table?: string
  readonly pipeline?: string
}

/** A checkpoint as stored, with the key it is stored under. */
export interface StoredCheckpoint {
  readonly key: CheckpointKey
  readonly checkpoint: Checkpoint
}

/**
 * Checkpoints in a warehouse table (`bronze.extraction_checkpoints` by default, created on first use), one row per
 * pipeline (source database, table, columns, filter and target). The PostgreSQL sink writes them in the same
 * transaction as the rows they cover.
 */
export function postgresCheckpoints(connection: Connection, options: { schema?: string; table?: string } = {}): PostgresCheckpointStore {
  const schema = checkIdentifier(options.schema ?? 'bronze', 'checkpoints.schema')
  const table = checkIdentifier(options.table ?? 'extraction_checkpoints', 'checkpoints.table')
  const target = qualifiedName(schema, table)

  /** Whether the checkpoint table exists with column `name` (false when the table does not exist). */
  const hasColumn = async (client: pg.ClientBase, name: string) => {
    const { rows } = await client.query<{ found: boolean }>(
      `select exists (select 1 from pg_attribute where attrelid = to_regclass($1) and attname = $2 and not attisdropped) as found`,
      [target, name],
    )
    return rows[0]?.found === true
  }

  const ensure = async (client: pg.ClientBase) => {
    if (await hasColumn(client, 'relations')) return
    // Concurrent first runs would race to create the schema and table (a raw catalog unique violation): one at a time,
    // under the same locks the sink's DDL takes.
    await ensureSchema(client, schema)
    await lockForDdl(client, schema, table)
    await client.query(`create table if not exists ${target} (
      source text not null, schema_name text not null, table_name text not null, pipeline text not null,
      cursor_column text not null, cursor_value text, lower_value text, horizon text, relations text, snapshot text not null,
      run_id text not null, rows bigint not null, status text not null,
      started_at timestamptz not null, updated_at timestamptz not null,
      primary key (source, schema_name, table_name, pipeline))`)
    await upgrade(client)
  }

  /**
   * A table made by 0.1 has no pipeline, horizon or relations column and is keyed by (source, schema, table): add them and key
   * it by the pipeline too. Its rows (source = a URL) are never matched by the new keys: those extractions start over.
   */
  const upgrade = async (client: pg.ClientBase) => {
    if (await hasColumn(client, 'pipeline')) return
    const pkey = await client.query<{ name: string }>(`select conname as name from pg_constraint where conrelid = $1::regclass and contype = 'p'`, [target])
    await client.query(
      `alter table ${target} add column pipeline text not null default '', add column if not exists horizon text, add column if not exists relations text`,
    )
    if (pkey.rows[0]) await client.query(`alter table ${target} drop constraint ${quoteIdent(pkey.rows[0].name)}`)
    await client.query(`alter table ${target} add primary key (source, schema_name, table_name, pipeline)`)
  }

  const writeWith = async (client: pg.ClientBase, key: CheckpointKey, next: Checkpoint, expectedRunId: string | null) => {
    await ensure(client)
    const parameters = [
      key.source,
      key.schema,
      key.table,
      next.cursorColumn,
      next.value,
      next.lower,
      next.snapshot,
      next.runId,
      next.rows,
      next.status,
      next.startedAt,
      next.updatedAt,
      expectedRunId,
      key.pipeline,
      next.horizon,
      next.relations ? JSON.stringify(next.relations) : null,
    ]
    // Optimistic concurrency: the row moves only if it is still the one this run started from.
    const result = await client.query(
      `insert into ${target} as c (source, schema_name, table_name, pipeline, cursor_column, cursor_value, lower_value, horizon, snapshot, run_id, rows, status, started_at, updated_at, relations)
       select $1, $2, $3, $14, $4, $5, $6, $15, $7, $8, $9, $10, $11, $12, $16
        where $13::text is null
       on conflict (source, schema_name, table_name, pipeline) do nothing`,
      parameters,
    )
    if (result.rowCount === 1) return
    const updated = await client.query(
      `update ${target} set cursor_column = $4, cursor_value = $5, lower_value = $6, snapshot = $7, run_id = $8, rows = $9,
              status = $10, started_at = $11, updated_at = $12, horizon = $15, relations = $16
        where source = $1 and schema_name = $2 and table_name = $3 and pipeline = $14 and run_id is not distinct from $13`,
      parameters,
    )
    if (updated.rowCount !== 1) {
      throw new CheckpointConflictError(`the checkpoint of ${key.schema}.${key.table} was moved by another run since this one started; nothing was written`, {
        step: 'sink',
        context: { schema: key.schema, table: key.table },
      })
    }
  }

  const columns = `source, schema_name, table_name, pipeline, cursor_column, cursor_value, lower_value, horizon, relations, snapshot, run_id,
                   rows::text as rows, status, started_at::text as started_at, updated_at::text as updated_at`
  /** `where` over the filter's fields, each a parameter; `true` for none. */
  const matching = (filter: CheckpointFilter) => {
    const fields = [
      ['schema_name', filter.schema],
      ['table_name', filter.table],
      ['pipeline', filter.pipeline],
    ].filter((field): field is [string, string] => field[1] !== undefined)
    return { where: fields.map(([column], index) => `${column} = $${index + 1}`).join(' and ') || 'true', values: fields.map(([, value]) => value) }
  }

  return {
    name: `postgres checkpoints ${schema}.${table}`,
    connection,
    writeWith,
    async read(key) {
      if (!(await connection.withClient((client) => hasColumn(client, 'relations')))) return undefined
      const { rows } = await connection.query<Record<string, string | null>>(
        `select ${columns} from ${target} where source = $1 and schema_name = $2 and table_name = $3 and pipeline = $4`,
        [key.source, key.schema, key.table, key.pipeline],
      )
      return rows[0] ? checkpointOf(rows[0]) : undefined
    },
    async list(filter = {}) {
      if (!(await connection.withClient((client) => hasColumn(client, 'relations')))) return []
      const { where, values } = matching(filter)
      const { rows } = await connection.query<Record<string, string | null>>(
        `select ${columns} from ${target} where ${where} order by schema_name, table_name, pipeline, source`,
        values,
      )
      return rows.map((row) => ({
        key: { source: row.source as string, schema: row.schema_name as string, table: row.table_name as string, pipeline: row.pipeline as string },
        checkpoint: checkpointOf(row),
      }))
    },
    async remove(filter) {
      if (!(await connection.withClient((client) => hasColumn(client, 'relations')))) return 0
      const { where, values } = matching(filter)
      return (await connection.query(`delete from ${target} where ${where}`, values)).rowCount ?? 0
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

function checkpointOf(row: Record<string, string | null>): Checkpoint {
  return {
    cursorColumn: row.cursor_column as string,
    value: row.cursor_value ?? null,
    lower: row.lower_value ?? null,
    horizon: row.horizon ?? '',
    ...(row.relations ? { relations: JSON.parse(row.relations) as number[] } : {}),
    snapshot: row.snapshot as string,
    runId: row.run_id as string,
    rows: Number(row.rows),
    status: 'committed',
    startedAt: row.started_at as string,
    updatedAt: row.updated_at as string,
  }
}
