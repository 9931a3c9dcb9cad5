import { execFileSync } from 'node:child_process'
import { findPostgresBinDir, startThrowawayCluster, THROWAWAY_SETTINGS, type ThrowawayPostgres } from './throwaway-postgres.js'

export interface TestPostgresOptions {
  /** Environment variable holding the URL of an existing server to use instead (default PG_DATAKIT_TEST_URL). */
  readonly urlVariable?: string
  readonly log?: (line: string) => void
}

/**
 * A PostgreSQL for tests, from the first of: a URL in `$PG_DATAKIT_TEST_URL`; a throwaway cluster from the
 * local server binaries; a container through @testcontainers/postgresql when a Docker engine answers.
 * Throws, saying what to install, when none is possible.
 */
export async function startTestPostgres(options: TestPostgresOptions = {}): Promise<ThrowawayPostgres> {
  const variable = options.urlVariable ?? 'PG_DATAKIT_TEST_URL'
  const url = process.env[variable]
  if (url) return { url, kind: 'external', stop: async () => undefined }
  if (findPostgresBinDir()) return startThrowawayCluster(options.log ? { log: options.log } : {})
  if (dockerAnswers()) return startContainer()
  throw new Error(
    `no PostgreSQL for the tests: set ${variable} to a superuser URL, install PostgreSQL server binaries (initdb, pg_ctl), or run a Docker engine`,
  )
}

function dockerAnswers(): boolean {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 10_000 })
    return true
  } catch {
    return false
  }
}

async function startContainer(): Promise<ThrowawayPostgres> {
  const moduleName = '@testcontainers/postgresql'
  // The part of @testcontainers/postgresql used here: it is an optional dev dependency, loaded by name at run time.
  let module: {
    PostgreSqlContainer: new (image: string) => {
      withCommand(command: string[]): { start(): Promise<{ getConnectionUri(): string; stop(): Promise<unknown> }> }
    }
  }
  try {
    module = (await import(moduleName)) as typeof module
  } catch {
    throw new Error('a Docker engine answers but @testcontainers/postgresql is not installed: npm install -D @testcontainers/postgresql')
  }
  const args = Object.entries(THROWAWAY_SETTINGS)
    .filter(([name]) => name !== 'listen_addresses')
    .flatMap(([name, value]) => ['-c', `${name}=${String(value).replace(/'/g, '')}`])
  const container = await new module.PostgreSqlContainer('postgres:15-alpine').withCommand(['postgres', ...args]).start()
  return { url: container.getConnectionUri(), kind: 'container', stop: async () => void (await container.stop()) }
}
