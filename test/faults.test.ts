import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it, onTestFinished } from 'vitest'
import { sql } from 'kysely'
import {
  bronzeMetadata,
  connect,
  ConnectionError,
  ConnectionLostError,
  copySource,
  extract,
  LockTimeoutError,
  memorySink,
  PermissionDeniedError,
  PoolTimeoutError,
  postgresSink,
  querySource,
  StatementTimeoutError,
  tableSource,
} from '../src/index.js'
import { startThrowawayCluster } from '../src/testing/index.js'
import { checksum } from './support/checksum.js'
import { useDatabases } from './support/fixtures.js'
import { capturingLogger } from './support/logger.js'
import { onFirstBatch } from './support/transforms.js'

const db = useDatabases('faults')
const COLUMNS = ['id', 'status', 'total']

async function seed(table: string, rows: number) {
  await db.sourceSql(`drop table if exists ${table}`)
  await db.sourceSql(`create table ${table} (id int primary key, status text, total numeric(12,2))`)
  await db.sourceSql(`insert into ${table} select g, 's' || (g % 7), g * 1.5 from generate_series(1, $1) g`, [rows])
}

async function backendsOf(database: string, application: string): Promise<number> {
  const [row] = await db.warehouseSql(`select count(*)::int as n from pg_stat_activity where datname = $1 and application_name = $2`, [database, application])
  return Number(row?.n)
}

function terminate(database: string, application: string): Promise<unknown> {
  return db.sourceSql(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = $2 and pid <> pg_backend_pid()`, [
    database,
    application,
  ])
}

describe('a backend terminated mid-run', () => {
  it('mid-cursor on the source: ConnectionLostError, bronze unchanged, no connection left, and a re-run lands everything', async () => {
    await seed('cursor_victim', 50_000)
    const source = connect({ url: db.sourceUrl, applicationName: 'cursor-victim' })
    const sink = postgresSink(db.warehouse, { table: 'cursor_victim' })
    try {
      await extract({ from: tableSource(source, { table: 'cursor_victim', where: sql`id <= ${100}` }), to: sink })
      const failure = await extract({
        from: tableSource(source, { table: 'cursor_victim' }),
        through: [onFirstBatch(() => terminate(db.sourceDatabase, 'cursor-victim'))],
        to: sink,
        retry: false,
      }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(ConnectionLostError)
      expect((failure as ConnectionLostError).step).toBe('source')
      expect(await db.warehouseSql('select count(*)::int as n from bronze.cursor_victim')).toEqual([{ n: 100 }])
      expect(source.stats().total - source.stats().idle).toBe(0)
      expect(db.warehouse.stats().total - db.warehouse.stats().idle).toBe(0)

      await extract({ from: tableSource(source, { table: 'cursor_victim' }), to: sink })
      expect(await checksum(db.warehouseDatabase, 'bronze.cursor_victim', COLUMNS)).toEqual(await checksum(db.sourceDatabase, 'cursor_victim', COLUMNS))
    } finally {
      await source.close()
    }
  })

  it('mid-COPY FROM on the warehouse: ConnectionLostError from the sink, bronze unchanged, then a clean re-run', async () => {
    await seed('sink_victim', 100_000)
    const warehouse = connect({ url: db.warehouseUrl, applicationName: 'sink-victim' })
    const sink = postgresSink(warehouse, { table: 'sink_victim', mode: 'append' })
    try {
      await extract({ from: copySource(db.source, { table: 'sink_victim', where: sql`id <= ${10}` }), to: sink })
      // The warehouse backend is terminated while the sink's COPY is open, before the first batch reaches it.
      let terminated = false
      const failure = await extract({
        from: copySource(db.source, { table: 'sink_victim' }),
        through: [
          bronzeMetadata(),
          onFirstBatch(async () => {
            terminated = true
            await terminate(db.warehouseDatabase, 'sink-victim')
          }),
        ],
        to: sink,
        retry: false,
      }).catch((error: unknown) => error)
      expect(terminated).toBe(true)
      expect(failure).toBeInstanceOf(ConnectionLostError)
      expect((failure as ConnectionLostError).step).toBe('sink')
      expect(await db.warehouseSql('select count(*)::int as n from bronze.sink_victim')).toEqual([{ n: 10 }])
      expect(warehouse.stats().total - warehouse.stats().idle).toBe(0)
      expect(db.source.stats().total - db.source.stats().idle).toBe(0)
      expect(await backendsOf(db.warehouseDatabase, 'sink-victim')).toBe(0)

      await extract({ from: copySource(db.source, { table: 'sink_victim' }), to: postgresSink(warehouse, { table: 'sink_victim' }) })
      expect(await checksum(db.warehouseDatabase, 'bronze.sink_victim', COLUMNS)).toEqual(await checksum(db.sourceDatabase, 'sink_victim', COLUMNS))
    } finally {
      await warehouse.close()
    }
  })

  it('retries a run whose connection was lost before the commit, and logs why', async () => {
    await seed('retried', 20_000)
    const source = connect({ url: db.sourceUrl, applicationName: 'retry-victim' })
    const logger = capturingLogger()
    let kills = 0
    try {
      const report = await extract({
        from: tableSource(source, { table: 'retried' }),
        through: [
          onFirstBatch(async () => {
            if (kills++ === 0) await terminate(db.sourceDatabase, 'retry-victim')
          }),
        ],
        to: postgresSink(db.warehouse, { table: 'retried' }),
        retry: { attempts: 3, initialDelayMs: 10 },
        logger,
      })
      expect(report.rows).toBe(20_000)
      expect(logger.lines.map((line) => [line.level, line.message, line.fields.code ?? null])).toEqual([
        ['info', 'extraction started', null],
        ['warn', 'extraction failed; nothing was committed, retrying', 'CONNECTION_LOST'],
        ['info', 'extraction started', null],
        ['info', 'extraction finished', null],
      ])
      // The finished line names the table written, not the sink's placeholder (`bronze.br_<table>`).
      expect(logger.lines.at(-1)?.fields.sink).toBe('postgres bronze.retried (replace)')
      expect(await checksum(db.warehouseDatabase, 'bronze.retried', COLUMNS)).toEqual(await checksum(db.sourceDatabase, 'retried', COLUMNS))
    } finally {
      await source.close()
    }
  })
})

describe('timeouts', () => {
  it('a statement timeout gives StatementTimeoutError and is not retried', async () => {
    const source = connect({ url: db.sourceUrl, timeouts: { statementMs: 100 } })
    const logger = capturingLogger()
    try {
      const slow = { sql: 'select pg_sleep(2) as slept', parameters: [], query: undefined } as never
      const failure = await extract({ from: querySource(source, slow, { name: 'slow' }), to: memorySink(), logger }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(StatementTimeoutError)
      expect((failure as StatementTimeoutError).sqlState).toBe('57014')
      expect(logger.lines.filter((line) => line.message === 'extraction started')).toHaveLength(1)
    } finally {
      await source.close()
    }
  })

  it('a lock timeout on the bronze table gives LockTimeoutError and leaves the table as it was', async () => {
    await seed('locked', 100)
    await extract({ from: tableSource(db.source, { table: 'locked' }), to: postgresSink(db.warehouse) })
    const warehouse = connect({ url: db.warehouseUrl, timeouts: { lockMs: 200 } })
    const holder = await db.warehouse.acquire()
    try {
      await holder.query('begin')
      await holder.query('lock table bronze.br_locked in access share mode')
      await db.sourceSql(`insert into locked values (101, 'new', 1)`)
      const failure = await extract({ from: tableSource(db.source, { table: 'locked' }), to: postgresSink(warehouse) }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(LockTimeoutError)
      await holder.query('rollback')
      expect(await db.warehouseSql('select count(*)::int as n from bronze.br_locked')).toEqual([{ n: 100 }])
    } finally {
      holder.release()
      await warehouse.close()
    }
  })
})

describe('a small pool under load', () => {
  it('five extractions on a pool of two wait their turn and all succeed', async () => {
    await seed('shared', 5_000)
    const source = connect({ url: db.sourceUrl, pool: { max: 2, acquireTimeoutMs: 30_000 } })
    try {
      const sinks = Array.from({ length: 5 }, () => memorySink())
      const reports = await Promise.all(sinks.map((sink) => extract({ from: tableSource(source, { table: 'shared' }), to: sink })))
      expect(reports.map((report) => report.rows)).toEqual([5000, 5000, 5000, 5000, 5000])
      expect(source.stats().total).toBeLessThanOrEqual(2)
    } finally {
      await source.close()
    }
  })

  it('fails with PoolTimeoutError when no client frees up in time, or retries until one does', async () => {
    const source = connect({ url: db.sourceUrl, pool: { max: 2, acquireTimeoutMs: 100 } })
    const held = [await source.acquire(), await source.acquire()]
    try {
      const failure = await extract({ from: tableSource(source, { table: 'shared' }), to: memorySink(), retry: false }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(PoolTimeoutError)

      setTimeout(() => held.forEach((client) => client.release()), 300)
      const report = await extract({ from: tableSource(source, { table: 'shared' }), to: memorySink(), retry: { attempts: 10, initialDelayMs: 100 } })
      expect(report.rows).toBe(5000)
    } finally {
      held.forEach((client) => {
        try {
          client.release()
        } catch {
          // released by the timer already
        }
      })
      await source.close()
    }
  })
})

describe('privileges and bad input', () => {
  it('a role without SELECT gives PermissionDeniedError and writes nothing', async () => {
    await seed('secret', 10)
    await db.sourceSql(`drop role if exists reader_${db.sourceDatabase}`)
    await db.sourceSql(`create role reader_${db.sourceDatabase} login`)
    const url = new URL(db.sourceUrl)
    url.username = `reader_${db.sourceDatabase}`
    const source = connect(url.toString())
    try {
      const failure = await extract({ from: tableSource(source, { table: 'secret' }), to: postgresSink(db.warehouse) }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(PermissionDeniedError)
      expect(await db.warehouseSql(`select to_regclass('bronze.br_secret') is null as absent`)).toEqual([{ absent: true }])
    } finally {
      await source.close()
      await db.sourceSql(`drop owned by reader_${db.sourceDatabase}`)
      await db.sourceSql(`drop role reader_${db.sourceDatabase}`)
    }
  })

  it('logs never carry the password', async () => {
    const secret = 'Log-Secret-5521'
    const url = new URL(db.sourceUrl)
    url.password = secret
    const source = connect(url.toString())
    const logger = capturingLogger()
    try {
      await extract({ from: tableSource(source, { table: 'shared' }), through: [bronzeMetadata()], to: memorySink(), logger })
      await extract({ from: tableSource(source, { table: 'no_such_table' }), to: memorySink(), logger }).catch(() => undefined)
      expect(logger.lines.length).toBeGreaterThanOrEqual(4)
      expect(JSON.stringify(logger.lines)).not.toContain(secret)
    } finally {
      await source.close()
    }
  })
})

describe('TLS', () => {
  // The directory holds a CA's private key: it goes when the test ends, passed or failed.
  const dirs: string[] = []
  afterAll(() => {
    for (const dir of dirs) expect(existsSync(dir), `${dir} is left behind`).toBe(false)
  })

  it('verify-full rejects a certificate for another host name; verify-ca and require accept it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgdk-tls-'))
    dirs.push(dir)
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=pg-datakit test CA', '-keyout', 'ca.key', '-out', 'ca.crt')
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=db.wrong.example', '-keyout', 'server.key', '-out', 'server.csr')
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:db.wrong.example\n')
    openssl(
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      'san.ext',
      '-out',
      'server.crt',
    )
    const server = await startThrowawayCluster({
      dataFiles: { 'server.crt': readFileSync(join(dir, 'server.crt'), 'utf8'), 'server.key': readFileSync(join(dir, 'server.key'), 'utf8') },
      settings: { ssl: 'on', ssl_cert_file: "'server.crt'", ssl_key_file: "'server.key'" },
    })
    try {
      const attempt = async (sslmode: string) => {
        const url = new URL(server.url)
        url.searchParams.set('sslmode', sslmode)
        url.searchParams.set('sslrootcert', join(dir, 'ca.crt'))
        const conn = connect(url.toString())
        try {
          const { rows } = await conn.query<{ ssl: boolean }>('select ssl from pg_stat_ssl where pid = pg_backend_pid()')
          return rows[0]?.ssl
        } finally {
          await conn.close()
        }
      }
      const rejected = await attempt('verify-full').catch((error: unknown) => error)
      expect(rejected).toBeInstanceOf(ConnectionError)
      expect((rejected as Error).message).toMatch(/altnames|host|certificate/i)
      expect((rejected as ConnectionError).retryable).toBe(false)
      expect(await attempt('verify-ca')).toBe(true)
      expect(await attempt('require')).toBe(true)
      expect(await attempt('prefer')).toBe(true)
    } finally {
      await server.stop()
    }
  })
})
