import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { extract, incrementalSource, PathNotWritableError } from '../src/index.js'
import { duckdbSink } from '../src/duckdb.js'
import { parquetSink } from '../src/parquet.js'
import { clientFor } from './support/databases.js'
import { duckdbRows } from './support/duckdb-read.js'
import { useDatabases } from './support/fixtures.js'
import { seededRandom } from './support/random.js'
import { runUntilKilled } from './support/run-until-killed.js'

const db = useDatabases('filecrash')
const CHILD = fileURLToPath(new URL('./support/file-sink-child.ts', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'pgdk-file-crash-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Every Parquet file a reader globbing the table would see, and every file the table's manifests list. */
function visibleAndListed(table: string): { visible: string[]; listed: string[] } {
  const root = join(dir, 'lake', table)
  const visible = (readdirSync(root, { recursive: true }) as string[]).filter((name) => name.endsWith('.parquet')).sort()
  const listed = readdirSync(root)
    .filter((name) => name.startsWith('run-'))
    .flatMap((run) =>
      (JSON.parse(readFileSync(join(root, run, '_manifest.json'), 'utf8')) as { files: { path: string }[] }).files.map((file) => `${run}/${file.path}`),
    )
    .sort()
  return { visible, listed }
}

describe('file sinks killed mid-run', () => {
  it('leave the previous table readable and no partial file visible (replace, SIGKILL at random moments)', { timeout: 180_000 }, async () => {
    await db.sourceSql(`create table big (id bigint primary key, note text, c timestamptz default now())`)
    await db.sourceSql(`insert into big (id, note) select g, repeat('x', 50) || g from generate_series(1, 200000) g`)
    const path = join(dir, 'crash.duckdb')
    const lake = join(dir, 'lake')
    const next = seededRandom(Number(process.env.RANDOM_WRITER_SEED ?? 20261129))
    let midRun = 0
    let rows = 200000
    for (let kill = 0; kill < 5; kill++) {
      // Each round changes the table, so a torn state (old and new rows mixed) would show in the count.
      await db.sourceSql(`insert into big (id, note) select g, 'round ${kill}' from generate_series(${rows + 1}, ${rows + 1000}) g`)
      rows += 1000
      const result = await runUntilKilled(CHILD, [db.sourceUrl, path, lake, 'big', 'replace'], 300 + Math.floor(next() * 2500))
      if (result.midRun) midRun++
      const [duck] = await duckdbRows(path, `SELECT count(*) AS n, count(DISTINCT _bronze_loaded_at) AS runs FROM bronze.br_big`).catch(() => [
        { n: 0n, runs: 0n },
      ])
      // Before the first commit the table may not exist yet; after it, it holds exactly one run's rows.
      if (duck && duck.n !== 0n) {
        expect(duck.runs).toBe(1n)
        expect([...Array(kill + 2).keys()].map((index) => BigInt(200000 + index * 1000))).toContain(duck.n)
      }
      const parquet = await duckdbRows(
        ':memory:',
        `SELECT count(*) AS n, count(DISTINCT _bronze_loaded_at) AS runs FROM read_parquet('${lake}/br_big/**/*.parquet')`,
      ).catch((error: Error) => (/No files found/.test(error.message) ? [{ n: 0n, runs: 0n }] : Promise.reject(error)))
      if (parquet[0]?.n !== 0n) {
        expect(parquet[0]?.runs).toBe(1n)
        const { visible, listed } = visibleAndListed('br_big')
        expect(visible).toEqual(listed)
      }
    }
    expect(midRun).toBeGreaterThanOrEqual(2)
    // A finished run afterwards cleans what the killed ones left in the temporary area.
    const { copySource } = await import('../src/index.js')
    await extract({ from: copySource(db.source, { table: 'big' }), to: parquetSink({ dir: lake }) })
    await extract({ from: copySource(db.source, { table: 'big' }), to: duckdbSink({ path }) })
    expect(readdirSync(join(lake, '.pg-datakit', 'tmp'))).toEqual([])
    expect(readdirSync(dir).filter((name) => name.includes('spool'))).toEqual([])
  })
})

describe('incremental runs into DuckDB and Parquet under concurrent writers and SIGKILLs', () => {
  it('lose and duplicate nothing: merge equals the source, append holds every version once', { timeout: 240_000 }, async () => {
    const table = 'ledger'
    await db.sourceSql(`create table ${table} (id serial primary key, note text, c timestamptz, v uuid not null default gen_random_uuid())`)
    await db.sourceSql(`insert into ${table} (note, c) select 'seed', now() - interval '1 day' + g * interval '1 second' from generate_series(1, 500) g`)
    const next = seededRandom(Number(process.env.RANDOM_WRITER_SEED ?? 20261130))
    let stop = false
    const tally = { transactions: 0, rolledBack: 0, backdated: 0, nulls: 0 }
    const writers = [1, 2, 3].map((index) => writer(table, 20261130 * 10 + index, tally, () => stop))
    const path = join(dir, 'incremental.duckdb')
    const lake = join(dir, 'incremental-lake')
    let midRun = 0
    try {
      for (let kill = 0; kill < 5; kill++) {
        if ((await runUntilKilled(CHILD, [db.sourceUrl, path, lake, table, 'incremental'], 200 + Math.floor(next() * 1500))).midRun) midRun++
      }
    } finally {
      stop = true
      await Promise.all(writers)
    }
    const from = incrementalSource(db.source, { table, cursorColumn: 'c' })
    for (let run = 0; run < 2; run++) {
      await extract({ from, to: duckdbSink({ path, mode: 'append', table: `${table}_append` }) })
      await extract({ from, to: duckdbSink({ path, mode: 'merge', table: `${table}_merge` }) })
      await extract({ from, to: parquetSink({ dir: lake, mode: 'append', table: `${table}_append` }) })
    }
    expect(midRun).toBeGreaterThanOrEqual(2)
    expect(Math.min(tally.rolledBack, tally.backdated, tally.nulls)).toBeGreaterThan(3)

    const { rows: source } = await db.source.query<{ row: string }>(`select concat_ws('|', id, note, c, v) as row from ${table} order by 1`)
    const text = `concat_ws('|', id, note, CAST(c AS VARCHAR), CAST(v AS VARCHAR)) AS row`
    const merged = await duckdbRows(path, `SELECT ${text} FROM bronze.${table}_merge ORDER BY 1`)
    expect(merged.map((row) => row.row)).toEqual(source.map((row) => row.row))
    for (const [read, from] of [
      [(sql: string) => duckdbRows(path, sql), `bronze.${table}_append`],
      [(sql: string) => duckdbRows(':memory:', sql), `read_parquet('${lake}/${table}_append/**/*.parquet')`],
    ] as const) {
      const [twice] = await read(`SELECT count(*) AS n FROM (SELECT v FROM ${from} GROUP BY v HAVING count(*) > 1)`)
      expect({ from, twice: twice?.n }).toEqual({ from, twice: 0n })
      const appended = new Set((await read(`SELECT ${text} FROM ${from}`)).map((row) => row.row))
      expect({ from, missing: source.filter((row) => !appended.has(row.row)).length }).toEqual({ from, missing: 0 })
    }
  })
})

describe('a file sink that cannot write its directory', () => {
  it('fails with PathNotWritableError, for Parquet and DuckDB (a path under a regular file: not writable even by root)', async () => {
    await db.sourceSql(`create table small (id int primary key)`)
    await db.sourceSql(`insert into small values (1)`)
    const file = join(dir, 'a-regular-file')
    writeFileSync(file, 'not a directory')
    const { copySource } = await import('../src/index.js')
    for (const to of [parquetSink({ dir: join(file, 'lake') }), duckdbSink({ path: join(file, 'db.duckdb') })]) {
      const error = await extract({ from: copySource(db.source, { table: 'small' }), to }).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(PathNotWritableError)
      expect((error as Error).message).toMatch(/ENOTDIR|EEXIST|Not a directory/)
    }
  })

  it('fails with PathNotWritableError on a read-only directory (checked as a non-root user when run as root)', async () => {
    const readOnly = join(dir, 'read-only')
    const { mkdirSync, chmodSync } = await import('node:fs')
    mkdirSync(readOnly)
    chmodSync(readOnly, 0o555)
    const { copySource } = await import('../src/index.js')
    if (process.getuid?.() === 0) {
      // Root ignores the mode: run the same extraction as the unprivileged user the throwaway cluster runs as.
      const { execFileSync } = await import('node:child_process')
      chmodSync(dir, 0o755)
      const child = fileURLToPath(new URL('./support/read-only-child.ts', import.meta.url))
      const out = execFileSync(process.execPath, ['--import', 'tsx', child, db.sourceUrl, 'small', join(readOnly, 'lake'), 'postgres'], {
        encoding: 'utf8',
        cwd: fileURLToPath(new URL('..', import.meta.url)),
      })
      expect(out.trim()).toBe('PATH_NOT_WRITABLE')
    } else {
      const error = await extract({ from: copySource(db.source, { table: 'small' }), to: parquetSink({ dir: join(readOnly, 'lake') }) }).catch(
        (caught: unknown) => caught,
      )
      expect(error).toBeInstanceOf(PathNotWritableError)
    }
  })
})

/** A writer of random transactions (inserts and updates stamped now(), the clock, backdated or NULL; savepoints; rollbacks). */
async function writer(
  table: string,
  seed: number,
  tally: { transactions: number; rolledBack: number; backdated: number; nulls: number },
  stopped: () => boolean,
) {
  const next = seededRandom(seed)
  const client = await clientFor(db.sourceUrl)
  const stamp = () => {
    const choice = Math.floor(next() * 4)
    if (choice === 2) tally.backdated++
    if (choice === 3) tally.nulls++
    return ['now()', 'clock_timestamp()', `now() - interval '10 minutes' * random()`, 'null'][choice]
  }
  const write = () =>
    next() < 0.6
      ? `insert into ${table} (note, c) values ('w${seed}', ${stamp()})`
      : `update ${table} set note = 'u${seed}', v = gen_random_uuid(), c = ${stamp()} where id = (select floor(random() * (select max(id) from ${table}))::int + 1)`
  try {
    while (!stopped()) {
      await client.query('begin')
      for (let step = 1 + Math.floor(next() * 3); step > 0; step--) {
        if (next() < 0.3) {
          await client.query('savepoint s')
          await client.query(write())
          await client.query(next() < 0.7 ? 'release savepoint s' : 'rollback to savepoint s')
        } else {
          await client.query(write())
        }
        if (next() < 0.3) await client.query(`select pg_sleep(${(next() * 0.05).toFixed(3)})`)
      }
      const rollback = next() < 0.1
      if (rollback) tally.rolledBack++
      await client.query(rollback ? 'rollback' : 'commit')
      tally.transactions++
    }
  } finally {
    await client.end()
  }
}
