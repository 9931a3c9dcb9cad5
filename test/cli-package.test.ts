import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXIT } from '../src/cli/exit-codes.js'
import { useDatabases } from './support/fixtures.js'

// Checks the packed package (dist/, made by `npm run build`, which CI runs before the tests); skipped when there is none.
const root = fileURLToPath(new URL('../', import.meta.url))
const built = existsSync(join(root, 'dist/cli.js')) && existsSync(join(root, 'dist/index.js'))
const run = promisify(execFile)

/** A command's exit code and output, whether it failed or not. */
async function attempt(file: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) {
  try {
    const { stdout, stderr } = await run(file, args, { ...options, maxBuffer: 64 * 1024 * 1024 })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' }
  }
}

describe.skipIf(!built)('the packed tarball', () => {
  const db = useDatabases('cli_pack')
  let project: string

  beforeAll(async () => {
    project = await mkdtemp(join(tmpdir(), 'pgdk-pack-'))
    // The tarball of what dist/ holds now (prepack would build again), installed as a user would, with the peers
    // this repository tests against.
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', project], { cwd: root })
    const tarball = join(project, stdout.trim().split('\n').at(-1)!)
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'pgdk-cli-user', private: true, type: 'module' }))
    const peers = await Promise.all(
      ['pg', 'kysely'].map(
        async (name) => `${name}@${(JSON.parse(await readFile(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version}`,
      ),
    )
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, ...peers], { cwd: project })
    await db.sourceSql(`create table items (id int primary key, label text)`)
    await db.sourceSql(`insert into items select g, 'item ' || g from generate_series(1, 2500) g`)
    await db.sourceSql(`analyze items`)
  }, 120_000)

  afterAll(async () => {
    if (project) await rm(project, { recursive: true, force: true })
  })

  it('installs a pg-datakit bin that prints its help and extracts a table between two databases', async () => {
    const installed = JSON.parse(await readFile(join(project, 'node_modules/pg-datakit/package.json'), 'utf8')) as { bin: Record<string, string> }
    expect(installed.bin['pg-datakit']).toBe('./dist/cli.js')

    const help = await attempt('npx', ['--no-install', 'pg-datakit', '--help'], { cwd: project })
    expect(help.code).toBe(EXIT.ok)
    expect(help.stdout).toContain('Usage: pg-datakit')

    const env = { ...process.env, SOURCE_DATABASE_URL: db.sourceUrl, WAREHOUSE_DATABASE_URL: db.warehouseUrl }
    const extracted = await attempt('npx', ['--no-install', 'pg-datakit', 'extract', '--table', 'items', '--mode', 'replace'], { cwd: project, env })
    expect(extracted.stderr).toBe('')
    expect(extracted.code).toBe(EXIT.ok)
    const lines = extracted.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines.filter((line) => line.event === 'progress').at(-1)).toMatchObject({ final: true, rows: 2500, totalRows: 2500, percent: 100 })
    expect(lines.at(-1)).toMatchObject({ event: 'report', rows: 2500, target: 'bronze.br_items' })
    expect(await db.warehouseSql(`select count(*)::int as n, count(distinct label)::int as labels from bronze.br_items`)).toEqual([{ n: 2500, labels: 2500 }])

    const unknown = await attempt('npx', ['--no-install', 'pg-datakit', 'extract', '--table', 'nope'], { cwd: project, env })
    expect(unknown.code).toBe(EXIT.source)
  })
})
