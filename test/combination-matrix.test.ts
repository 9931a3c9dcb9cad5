import { sql } from 'kysely'
import { describe, expect, it } from 'vitest'
import {
  bronzeMetadata,
  ConfigError,
  copySource,
  expandArrays,
  extract,
  incrementalSource,
  parallelSource,
  parseJsonb,
  partitionedSource,
  postgresSink,
  querySource,
  tableSource,
  type Connection,
  type RunReport,
  type Source,
  type Transform,
} from '../src/index.js'
import { tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

/**
 * Every source kind x {no transform, bronzeMetadata, bronze + parseJsonb + expandArrays, a custom transform} x every
 * sink mode x {byte path, decoded path}, each run twice with inserts, updates and a schema drift (a numeric widened,
 * a column added) between, on a table whose column names are hostile (`__proto__`, `constructor`, quotes, dots,
 * spaces) and whose types are not the easy ones. After each run bronze is compared with the source by PostgreSQL's
 * text of every value. Combinations that cannot work are refused with a typed error before anything is written.
 */
const db = useDatabases('matrix')

const COLUMNS = [
  'id',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'we"ird',
  'dot.ted',
  'sp ace',
  'c',
  'tags',
  'doc',
  'ts',
  'iv',
  'u',
  'f',
  'n',
  'b',
  'm',
  'g',
]

const TABLE_DDL = `(
  id int primary key, "__proto__" text, "constructor" int, "toString" jsonb, "hasOwnProperty" text, "we""ird" text,
  "dot.ted" numeric(12,2), "sp ace" timestamptz, c timestamptz, tags text[], doc jsonb, ts timestamp(3), iv interval,
  u uuid, f float8, n numeric, b bytea, m matrix_mood, g int generated always as (id * 2) stored)`

const insertRows = (
  table: string,
) => `insert into ${table} (id, "__proto__", "constructor", "toString", "hasOwnProperty", "we""ird", "dot.ted", "sp ace", c, tags, doc, ts, iv, u, f, n, b, m)
  select g, case when g % 5 = 0 then null else 'p' || g || E'\\t\\\\n\\n' end, g * 3,
         jsonb_build_object('k', g, 'arr', jsonb_build_array(g, 'x')), case when g % 3 = 0 then null else 'own' || g end,
         'q"uote' || g, g * 1.25, '2024-01-01'::timestamptz + g * interval '1 minute', clock_timestamp(),
         array['a' || g, null, 'b,c', '{x}'], case when g % 7 = 0 then null else '{"x": [1, 2.5, "s\\u00e9"], "big": 12345678901234567890}'::jsonb end,
         '2024-02-01 10:00:00.123'::timestamp + g * interval '1 second', make_interval(days => g, secs => 1.5),
         md5(g::text)::uuid, case g % 4 when 0 then 'NaN'::float8 when 1 then '-Infinity'::float8 else g / 3.0 end,
         (10::numeric ^ 30) + g + 0.000000001, decode('00ff' || lpad(to_hex(g), 4, '0'), 'hex'),
         (case when g % 2 = 0 then 'ok' else 'meh' end)::matrix_mood
    from generate_series($1::int, $2::int) g`

/** Between the runs: new rows, changed rows (hostile columns too), a wider numeric with more digits, a new column. */
const change = (table: string) => [
  `alter table ${table} alter column "dot.ted" type numeric(14,4)`,
  `alter table ${table} add column added text`,
  insertRows(table).replace('$1::int, $2::int', '101, 130'),
  `update ${table} set "__proto__" = 'changed', "constructor" = null, "dot.ted" = id * 1.2345, added = 'new' || id, c = clock_timestamp() where id % 4 = 0 and id <= 100`,
]

const custom: Transform = {
  name: 'custom',
  shape: (input) => ({ ...input, columns: [...input.columns, { name: '_seen', type: 'boolean', typeOid: 16 }] }),
  async *apply(batches) {
    for await (const batch of batches) yield { rows: batch.rows.map((row) => ({ ...row, _seen: true })) }
  },
}

const TRANSFORMS: [string, () => Transform[]][] = [
  ['none', () => []],
  ['bronze', () => [bronzeMetadata()]],
  ['bronze+json', () => [bronzeMetadata(), parseJsonb(), expandArrays()]],
  ['custom', () => [custom]],
]
const MODES = ['replace', 'append', 'merge'] as const

type Kind = 'table' | 'query' | 'copy' | 'incremental' | 'parallel' | 'partitioned'
const sourceOf = (kind: Kind, connection: Connection, table: string): Source => {
  switch (kind) {
    case 'table':
      return tableSource(connection, { table, batchSize: 37 })
    case 'query':
      return querySource(connection, sql`select * from ${sql.table(table)}`.compile(connection.kysely()), { name: table, batchSize: 37 }) as Source
    case 'copy':
      return copySource(connection, { table, batchSize: 37 })
    case 'incremental':
      return incrementalSource(connection, { table, cursorColumn: 'c', batchSize: 37 })
    case 'parallel':
      return parallelSource(connection, { table, concurrency: 2, pieces: 3, batchSize: 37 })
    case 'partitioned':
      return partitionedSource(connection, { table, concurrency: 2, batchSize: 37 })
  }
}
const hasBytes = (kind: Kind) => kind === 'copy' || kind === 'parallel' || kind === 'partitioned'

describe.each(['table', 'query', 'copy', 'incremental', 'parallel', 'partitioned'] as const)('the %s source', (kind) => {
  it('lands exactly the source through every transform, sink mode and path, across two runs and a drift', { timeout: 180_000 }, async () => {
    const table = `m_${kind}`
    await db.sourceSql(`do $$ begin create type matrix_mood as enum ('ok', 'meh'); exception when duplicate_object then null; end $$`)
    if (kind === 'partitioned') {
      await db.sourceSql(`create table ${table} ${TABLE_DDL.replace('id int primary key', 'id int not null')} partition by range (id)`)
      await db.sourceSql(`alter table ${table} add primary key (id)`)
      await db.sourceSql(`create table ${table}_low partition of ${table} for values from (minvalue) to (50)`)
      await db.sourceSql(`create table ${table}_high partition of ${table} for values from (50) to (maxvalue)`)
    } else {
      await db.sourceSql(`create table ${table} ${TABLE_DDL}`)
    }
    await db.sourceSql(insertRows(table), [1, 100])

    const combos = TRANSFORMS.flatMap(([transform, through]) =>
      MODES.flatMap((mode) =>
        (hasBytes(kind) && transform !== 'bronze+json' && transform !== 'custom' ? [true, false] : [false]).map((bytes) => ({
          name: `${kind} | ${transform} | ${mode} | ${bytes ? 'bytes' : 'decoded'}`,
          target: `t_${kind}_${transform.replace(/\W/g, '')}_${mode}_${bytes ? 'b' : 'd'}`,
          through,
          mode,
          bytes,
        })),
      ),
    )
    const failures: string[] = []
    const delivered = new Map<string, number[]>()

    const runAll = async (run: number, columns: string[]) => {
      for (const combo of combos) {
        const attempt = () =>
          extract({
            from: sourceOf(kind, db.source, table),
            through: combo.through(),
            to: postgresSink(db.warehouse, { mode: combo.mode, table: combo.target, ...(kind === 'query' ? { primaryKey: ['id'] } : {}) }),
            fastPath: combo.bytes,
          })
        if (kind === 'incremental' && combo.mode === 'replace') {
          const error = await attempt().catch((caught: unknown) => caught)
          if (!(error instanceof ConfigError)) failures.push(`${combo.name}: expected a ConfigError, got ${String(error)}`)
          continue
        }
        let report: RunReport
        try {
          report = await attempt()
        } catch (error) {
          failures.push(`${combo.name} (run ${run}): ${(error as Error).message}`)
          continue
        }
        delivered.set(combo.name, [...(delivered.get(combo.name) ?? []), report.rows])
        if (combo.bytes && report.path !== 'copy-bytes') failures.push(`${combo.name}: ran on the ${report.path} path`)
        const equal = await tablesEqual(db.sourceUrl, table, db.warehouseUrl, `bronze.${combo.target}`, columns)
        const rows = delivered.get(combo.name) ?? []
        if (combo.mode === 'append') {
          // Every current row is there; the bronze table holds exactly what the runs delivered.
          const expected = rows.reduce((sum, count) => sum + count, 0)
          if (equal.missing !== 0 || equal.targetRows !== expected) {
            failures.push(`${combo.name} (run ${run}): missing ${equal.missing}, ${equal.targetRows} rows in bronze, ${expected} delivered`)
          }
          // ALTER COLUMN ... TYPE rewrote every row (a new row version, and "dot.ted" now prints 4 decimals): run 2
          // delivers the 100 rewritten rows and the 30 new ones, each once.
          if (kind === 'incremental' && run === 2 && rows[1] !== 130) failures.push(`${combo.name}: run 2 delivered ${rows[1]}, not 130`)
        } else if (equal.missing !== 0 || equal.extra !== 0) {
          failures.push(`${combo.name} (run ${run}): missing ${equal.missing}, extra ${equal.extra}`)
        }
      }
    }

    await runAll(1, COLUMNS)
    for (const statement of change(table)) await db.sourceSql(statement)
    await runAll(2, [...COLUMNS, 'added'])
    expect(failures).toEqual([])
  })
})
