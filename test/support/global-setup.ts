import type { TestProject } from 'vitest/node'
import { startTestPostgres } from '../../src/testing/index.js'

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string
  }
}

/** One PostgreSQL for the whole run; every test file makes its own databases in it. */
export default async function setup(project: TestProject) {
  const postgres = await startTestPostgres({ log: (line) => console.warn(line) })
  project.provide('postgresUrl', postgres.url)
  return async () => {
    await postgres.stop()
  }
}
