/**
 * Where a Parquet table's files live, and how a run makes them visible in one rename:
 *
 *   <dir>/<table>                      a symbolic link to the table's current generation (what readers read)
 *   <dir>/.pg-datakit/<table>/g-<id>/  a generation: one directory per run, `run-000001/`, ... each holding the run's
 *                                      Parquet files (`part-0.parquet`, or Hive directories `key=value/` when
 *                                      partitioned) and `_manifest.json`
 *   <dir>/.pg-datakit/tmp/<pid>-<id>/  a run being written: nothing under <dir>/<table> points here
 *
 * An append renames its run directory into the current generation (one rename: the files and their manifest appear
 * together). A replace builds a new generation and swaps the link (`rename(2)` over the old link is atomic): readers
 * see the old table or the new one, never a part, and never no table. Data files are fsynced before the rename.
 */
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { processAlive } from '../../util/process-alive.js'

export const STATE_DIR = '.pg-datakit'
export const MANIFEST = '_manifest.json'

export interface TablePaths {
  /** What readers read: `<dir>/<table>`. */
  readonly link: string
  /** `<dir>/.pg-datakit/<table>`: the generations and the table's lock. */
  readonly state: string
}

export const tablePaths = (dir: string, table: string): TablePaths => ({ link: join(dir, table), state: join(dir, STATE_DIR, table) })
export const tmpRoot = (dir: string) => join(dir, STATE_DIR, 'tmp')

/** The generation the table's link points to, or undefined when the table does not exist. Throws if `<dir>/<table>` is not ours. */
export async function currentGeneration(paths: TablePaths): Promise<string | undefined> {
  const stat = await lstat(paths.link).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined
    throw error
  })
  if (!stat) return undefined
  if (!stat.isSymbolicLink()) {
    throw Object.assign(new Error(`${paths.link} exists and is not the link parquetSink makes; move it away or choose another table name`), { notOurs: true })
  }
  return join(paths.link, '..', await readlink(paths.link))
}

/** Run directories of a generation, oldest first. */
export async function runDirectories(generation: string): Promise<string[]> {
  const names = await readdir(generation).catch(() => [] as string[])
  return names.filter((name) => /^run-\d+$/.test(name)).sort()
}

/** The next run directory's name in a generation. */
export async function nextRunName(generation: string): Promise<string> {
  const last = (await runDirectories(generation)).at(-1)
  return `run-${String(last ? Number(last.slice(4)) + 1 : 1).padStart(6, '0')}`
}

/** Points `<dir>/<table>` at `generation`, atomically replacing the previous link. */
export async function pointTo(paths: TablePaths, generation: string): Promise<void> {
  const temporary = join(paths.state, `link-${process.pid}-${Date.now()}`)
  await symlink(relative(join(paths.link, '..'), generation), temporary)
  await rename(temporary, paths.link)
}

/** Removes generations other than `keep` (the current one, and the previous one that readers may still be reading). */
export async function removeGenerations(paths: TablePaths, keep: readonly string[]): Promise<void> {
  for (const name of await readdir(paths.state).catch(() => [] as string[])) {
    const path = join(paths.state, name)
    if (name.startsWith('g-') && !keep.includes(path)) await rm(path, { recursive: true, force: true })
  }
}

/** Temporary run directories whose process is gone (killed runs): removed at the start of the next run. */
export async function removeStaleRuns(dir: string): Promise<void> {
  for (const name of await readdir(tmpRoot(dir)).catch(() => [] as string[])) {
    const pid = Number(name.split('-')[0])
    if (Number.isInteger(pid) && pid > 0 && !processAlive(pid)) await rm(join(tmpRoot(dir), name), { recursive: true, force: true })
  }
}

/** Files under `root`, as paths relative to it (`part-0.parquet`, `region=eu/data_0.parquet`). */
export async function listFiles(root: string, under = ''): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(join(root, under), { withFileTypes: true })) {
    const path = under ? `${under}/${entry.name}` : entry.name
    if (entry.isDirectory()) out.push(...(await listFiles(root, path)))
    else out.push(path)
  }
  return out.sort()
}

export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch {
    return undefined
  }
}

export { mkdir }
