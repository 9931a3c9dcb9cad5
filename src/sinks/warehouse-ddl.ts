import type pg from 'pg'
import { ConfigError, UnsupportedTypeError, type ErrorContext } from '../errors.js'
import { qualifiedName, quoteIdent } from '../pg/identifiers.js'
import type { Column } from '../pg/types.js'
import type { RunConstants } from '../contracts.js'
import { literal } from '../pg/inline-parameters.js'
import { alterColumns, isReady, planColumns, refuseDrift } from './schema-drift.js'

/**
 * Checks that every column type is a type name the warehouse knows, and nothing else: `regtype` input
 * parses the text as a lone type name, so a type string can never smuggle other SQL into the DDL.
 */
export async function checkColumnTypes(client: pg.ClientBase, columns: readonly Column[], table: string): Promise<void> {
  const seen = new Set<string>()
  for (const column of columns) {
    if (seen.has(column.type)) continue
    seen.add(column.type)
    await client.query('savepoint pgdk_type_check')
    try {
      await client.query('select $1::text::regtype', [column.type])
      await client.query('release savepoint pgdk_type_check')
    } catch (cause) {
      await client.query('rollback to savepoint pgdk_type_check')
      throw new UnsupportedTypeError(`column "${column.name}" has type "${column.type}", which the warehouse does not know as a type name`, {
        step: 'sink',
        context: { table, column: column.name },
        cause,
      })
    }
  }
}

export function columnsDdl(columns: readonly Column[]): string {
  return columns.map((column) => `${quoteIdent(column.name)} ${column.type}`).join(', ')
}

/** Run-constant columns as DDL with their value as the default: a COPY that leaves them out fills them from it. */
export function constantColumnsDdl(constants: RunConstants): string[] {
  return constants.columns.map((column) => `${quoteIdent(column.name)} ${column.type} default ${literal(constants.values[column.name])}::${column.type}`)
}

/** No `if not exists`: a table made meanwhile by another run must be seen (prepareTable plans under a lock), not skipped. */
export function createTableSql(schema: string, table: string, columns: readonly Column[], primaryKey?: readonly string[]): string {
  const key = primaryKey?.length ? `, primary key (${primaryKey.map(quoteIdent).join(', ')})` : ''
  return `create table ${qualifiedName(schema, table)} (${columnsDdl(columns)}${key})`
}

/** Merge upserts with ON CONFLICT, which needs a unique index on exactly the key columns. */
export async function requireUniqueKey(client: pg.ClientBase, schema: string, table: string, key: readonly string[]): Promise<void> {
  const { rows } = await client.query<{ found: boolean }>(
    `select exists (
       select 1 from pg_index i
        where i.indrelid = (select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2)
          and i.indisunique and i.indpred is null
          and (select array_agg(a.attname::text order by a.attname::text) from pg_attribute a where a.attrelid = i.indrelid and a.attnum = any(i.indkey))
              = (select array_agg(k order by k) from unnest($3::text[]) k)) as found`,
    [schema, table, key],
  )
  if (!rows[0]?.found) {
    throw new ConfigError(
      'primaryKey',
      `merge into ${schema}.${table} needs a unique index on (${key.join(', ')}); create one: create unique index on ${qualifiedName(schema, table)} (${key.map(quoteIdent).join(', ')})`,
      { step: 'sink' },
    )
  }
}

/**
 * Upserts from the staging table: the last row for a key wins (a run may carry one key twice, e.g. after an
 * explode), existing keys get every other column updated.
 */
export function upsertSql(target: string, staging: string, columns: readonly Column[], key: readonly string[]): string {
  const names = columns.map((column) => quoteIdent(column.name))
  const keys = key.map(quoteIdent)
  const updates = names.filter((name) => !keys.includes(name)).map((name) => `${name} = excluded.${name}`)
  return `insert into ${target} (${names.join(', ')})
    select distinct on (${keys.join(', ')}) ${names.join(', ')} from ${staging} order by ${keys.join(', ')}, ctid desc
    on conflict (${keys.join(', ')}) do ${updates.length ? `update set ${updates.join(', ')}` : 'nothing'}`
}

/**
 * Serializes DDL on one schema or table across sessions until the transaction ends. Two first runs into a new target
 * would otherwise both create it: the second waits on the first's uncommitted catalog rows and then fails with a raw
 * unique violation on pg_namespace or pg_type ("duplicate key value"). Whoever takes the lock second makes its plan
 * again after it, and sees the first one's committed schema, table and columns.
 */
export async function lockForDdl(client: pg.ClientBase, schema: string, table?: string): Promise<void> {
  const name = table === undefined ? quoteIdent(schema) : qualifiedName(schema, table)
  await client.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [`pg-datakit ddl ${name}`])
}

export async function ensureSchema(client: pg.ClientBase, schema: string): Promise<void> {
  const exists = await client.query('select 1 from pg_namespace where nspname = $1', [schema])
  if (exists.rowCount !== 0) return
  await lockForDdl(client, schema)
  await client.query(`create schema if not exists ${quoteIdent(schema)}`)
}

/**
 * Makes the table append and merge write into ready for the stream, in the run's transaction: created when missing
 * (with the merge key), source columns it lacks added, columns whose source type got wider widened, drift refused
 * before anything is written (schema-drift.ts). A table that needs nothing is left alone and unlocked, so runs
 * appending to it at once do not wait on each other; a change is made under `lockForDdl` on a fresh plan.
 */
export async function prepareTable(
  client: pg.ClientBase,
  schema: string,
  table: string,
  columns: readonly Column[],
  key: readonly string[] | undefined,
  context: ErrorContext,
): Promise<void> {
  let plan = await planColumns(client, schema, table, columns)
  refuseDrift(plan, schema, table, context)
  if (isReady(plan)) return
  await lockForDdl(client, schema, table)
  plan = await planColumns(client, schema, table, columns)
  refuseDrift(plan, schema, table, context)
  if (!plan.exists) await client.query(createTableSql(schema, table, columns, key))
  else await alterColumns(client, schema, table, plan, context)
}

/**
 * Adds run-constant columns to a freshly loaded table without touching its rows: a column added with a constant
 * default keeps the value in pg_attribute.attmissingval for existing rows (PostgreSQL 11+, no rewrite). The
 * defaults are dropped right after, so the table ends exactly like one loaded row by row.
 */
export async function addConstantColumns(client: pg.ClientBase, schema: string, table: string, constants: RunConstants): Promise<void> {
  const add = constantColumnsDdl(constants).map((ddl) => `add column ${ddl}`)
  const drop = constants.columns.map((column) => `alter column ${quoteIdent(column.name)} drop default`)
  await client.query(`alter table ${qualifiedName(schema, table)} ${add.join(', ')}`)
  await client.query(`alter table ${qualifiedName(schema, table)} ${drop.join(', ')}`)
}
