import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { expect, it, vi } from 'vitest'
import { findPostgresBinDir, startThrowawayCluster } from '../src/testing/index.js'

const CHILD = fileURLToPath(new URL('./support/cluster-child.ts', import.meta.url))

async function dataDirectory(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<{ data_directory: string }>('show data_directory')).rows[0]?.data_directory as string
  } finally {
    await client.end()
  }
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 })
  try {
    await client.connect()
    await client.end()
    return true
  } catch {
    return false
  }
}

it.skipIf(!findPostgresBinDir())('stop() shuts the cluster down and deletes its directory', { timeout: 120_000 }, async () => {
  const server = await startThrowawayCluster()
  const root = dirname(await dataDirectory(server.url))
  expect(existsSync(root)).toBe(true)
  await server.stop()
  expect(existsSync(root)).toBe(false)
  expect(await answers(server.url)).toBe(false)
})

it.skipIf(!findPostgresBinDir())('a cluster whose process was SIGKILLed is stopped and deleted by its watchdog', { timeout: 120_000 }, async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], { stdio: ['ignore', 'pipe', 'inherit'] })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (data: Buffer) => {
      out += data.toString()
      if (out.includes('\n')) resolve(out.trim())
    })
    child.on('exit', (code) => reject(new Error(`the child ended before printing a URL (${code})`)))
  })
  const root = dirname(await dataDirectory(url))
  child.kill('SIGKILL')
  await vi.waitFor(
    async () => {
      expect(existsSync(root)).toBe(false)
      expect(await answers(url)).toBe(false)
    },
    { timeout: 30_000, interval: 250 },
  )
})
