import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { bronzeMetadata, copySource, extract } from '../src/index.js'
import { duckdbSink } from '../src/duckdb.js'
import { duckdbRows } from './support/duckdb-read.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('duckfile')
const dir = mkdtempSync(join(tmpdir(), 'pgdk-duckfile-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('duckdbSink file names', () => {
  // DuckDB names a file's catalog after the file: bronze.duckdb made a catalog "bronze" beside the schema "bronze".
  for (const file of ['bronze.duckdb', "it's bronze.duckdb", 'br_items.duckdb']) {
    it(`replaces, appends and merges into a file named ${file}`, async () => {
      await db.sourceSql(`create table if not exists items (id int primary key, v text)`)
      await db.sourceSql(`truncate items; insert into items select g, 'v' || g from generate_series(1, 50) g`)
      const path = join(dir, file)
      const run = (mode: 'replace' | 'append' | 'merge') =>
        extract({ from: copySource(db.source, { table: 'items' }), through: [bronzeMetadata()], to: duckdbSink({ path, mode, primaryKey: ['id'] }) })
      expect((await run('replace')).rows).toBe(50)
      expect((await run('append')).rows).toBe(50)
      await db.sourceSql(`update items set v = 'changed' where id <= 5`)
      expect((await run('merge')).rows).toBe(50)
      // An analyst opening the file names the catalog too when it is called like the schema.
      const catalog = file.replace(/\.duckdb$/, '').replace(/"/g, '""')
      expect(
        await duckdbRows(path, `select count(*)::int as n, count(*) filter (where v = 'changed')::int as changed from "${catalog}".bronze.br_items`),
      ).toEqual([{ n: 100, changed: 10 }])
    })
  }
})
