import { execFile as execFileCallback, execFileSync } from 'node:child_process'
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { watchForOrphan } from './orphan-watchdog.js'

const execFile = promisify(execFileCallback)

/** A PostgreSQL server that exists for one test run or one script, and its superuser URL. */
export interface ThrowawayPostgres {
  /** Superuser URL of the `postgres` database. */
  readonly url: string
  /** How it was obtained: a local cluster, a container, or a URL from the environment. */
  readonly kind: 'cluster' | 'container' | 'external'
  stop(): Promise<void>
}

export interface ThrowawayClusterOptions {
  /** Directory of initdb/pg_ctl; found with pg_config, $PG_BINDIR or /usr/lib/postgresql/<v>/bin when absent. */
  readonly binDir?: string
  /** Extra postgresql.conf settings. */
  readonly settings?: Readonly<Record<string, string | number>>
  /** Files written into the data directory before the server starts (e.g. `server.crt`, `server.key`), mode 0600. */
  readonly dataFiles?: Readonly<Record<string, string>>
  readonly log?: (line: string) => void
}

/** Settings a throwaway cluster gets: logical replication ready, durability off (it is thrown away). */
export const THROWAWAY_SETTINGS: Readonly<Record<string, string | number>> = Object.freeze({
  listen_addresses: "'127.0.0.1'",
  wal_level: 'logical',
  max_replication_slots: 20,
  max_wal_senders: 20,
  max_connections: 200,
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  shared_buffers: "'128MB'",
  // Tests of transactions prepared in another database (PREPARE TRANSACTION) need a few.
  max_prepared_transactions: 10,
})

/** Finds PostgreSQL server binaries on this machine, or undefined. */
export function findPostgresBinDir(): string | undefined {
  const candidates: string[] = []
  if (process.env.PG_BINDIR) candidates.push(process.env.PG_BINDIR)
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
  } catch {
    // no pg_config on PATH
  }
  for (const root of ['/usr/lib/postgresql', '/usr/local/pgsql', '/opt/homebrew/opt']) {
    if (!existsSync(root)) continue
    const versions = readdirSync(root).sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    for (const version of versions) candidates.push(join(root, version, 'bin'))
  }
  candidates.push('/usr/local/pgsql/bin', '/usr/local/bin', '/usr/bin')
  return candidates.find((dir) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl')))
}

/**
 * Starts a new PostgreSQL cluster from the installed server binaries: initdb into a temporary directory,
 * a free port on 127.0.0.1, `wal_level=logical`, no fsync. When the process runs as root, the cluster runs as
 * the `postgres` OS user (PostgreSQL refuses to run as root). `stop()` shuts it down and deletes it.
 */
export async function startThrowawayCluster(options: ThrowawayClusterOptions = {}): Promise<ThrowawayPostgres> {
  const binDir = options.binDir ?? findPostgresBinDir()
  if (!binDir) throw new Error('no PostgreSQL server binaries found (initdb, pg_ctl); install PostgreSQL or set PG_BINDIR')
  const root = mkdtempSync(join(tmpdir(), 'pg-datakit-'))
  const dataDir = join(root, 'data')
  const asUser = runAs()
  if (asUser) chownSync(root, asUser.uid, asUser.gid)
  // A server binary's argv, run as the cluster's OS user.
  const command = (name: string, args: readonly string[]): string[] =>
    asUser ? ['runuser', '-u', asUser.name, '--', join(binDir, name), ...args] : [join(binDir, name), ...args]
  const run = async (name: string, args: readonly string[]) => {
    const [file, ...fullArgs] = command(name, args) as [string, ...string[]]
    return execFile(file, fullArgs, { cwd: root, env: { ...process.env, LC_ALL: 'C', LANG: 'C' } })
  }
  try {
    await run('initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'])
    for (const [name, content] of Object.entries(options.dataFiles ?? {})) {
      const path = join(dataDir, name)
      writeFileSync(path, content, { mode: 0o600 })
      if (asUser) chownSync(path, asUser.uid, asUser.gid)
    }
    let lastError: unknown
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort()
      const settings = { ...THROWAWAY_SETTINGS, port, unix_socket_directories: `'${root}'`, ...options.settings }
      appendFileSync(
        join(dataDir, 'postgresql.conf'),
        `\n# pg-datakit throwaway cluster, attempt ${attempt}\n${Object.entries(settings)
          .map(([k, v]) => `${k} = ${v}`)
          .join('\n')}\n`,
      )
      try {
        await run('pg_ctl', ['-D', dataDir, '-l', join(root, 'server.log'), '-w', '-t', '60', 'start'])
        const url = `postgresql://postgres@127.0.0.1:${port}/postgres`
        const stopCommand = ['pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']] as const
        const watchdog = watchForOrphan(command(...stopCommand), root)
        let stopped = false
        return {
          url,
          kind: 'cluster',
          stop: async () => {
            if (stopped) return
            stopped = true
            watchdog.cancel()
            await run(...stopCommand).catch(() => undefined)
            rmSync(root, { recursive: true, force: true })
          },
        }
      } catch (error) {
        lastError = error
        options.log?.(`throwaway cluster did not start on port ${port}; trying another`)
      }
    }
    const log = existsSync(join(root, 'server.log')) ? readFileSync(join(root, 'server.log'), 'utf8').slice(-2000) : ''
    throw new Error(`the throwaway PostgreSQL did not start: ${(lastError as Error).message}\n${log}`)
  } catch (error) {
    rmSync(root, { recursive: true, force: true })
    throw error
  }
}

function runAs(): { name: string; uid: number; gid: number } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
    return { name: 'postgres', uid, gid }
  } catch {
    throw new Error('running as root, and there is no "postgres" OS user to run PostgreSQL as; create one (useradd postgres) or run as another user')
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}
