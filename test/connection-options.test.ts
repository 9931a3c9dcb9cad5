import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { ConfigError, connect, connectSource, redact } from '../src/index.js'
import { parseConnectionUrl } from '../src/connection/url.js'
import { tlsOptionsFor } from '../src/connection/ssl.js'
import { startupOptions } from '../src/connection/session.js'

const SECRET = 'Pw-7f3c1d-zz'

function configError(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return error as ConfigError
  }
  throw new Error('expected a ConfigError')
}

describe('connection URLs', () => {
  it('reads every part of a URL, decoding percent-escapes', () => {
    expect(
      parseConnectionUrl(
        'postgresql://etl%40corp:p%40ss%2Fword@db.example.com:6543/shop%20db?sslmode=verify-full&application_name=nightly&connect_timeout=5&sslrootcert=/ca.pem',
      ),
    ).toEqual({
      host: 'db.example.com',
      port: 6543,
      user: 'etl@corp',
      password: 'p@ss/word',
      database: 'shop db',
      sslMode: 'verify-full',
      applicationName: 'nightly',
      connectTimeoutMs: 5000,
      rootCertFile: '/ca.pem',
    })
  })

  it('takes a unix socket directory from ?host= and IPv6 hosts in brackets', () => {
    expect(parseConnectionUrl('postgres://u@/db?host=/var/run/postgresql').host).toBe('/var/run/postgresql')
    expect(parseConnectionUrl('postgres://u@[::1]:5433/db').host).toBe('::1')
  })

  // Each of these is a case pg-connection-string (which reads the rest) gets wrong for libpq: see src/connection/url.ts.
  it('decodes every percent-escape in the database name and takes dbname= as the database, as libpq does', () => {
    expect(parseConnectionUrl('postgres://u@h/sales%3Feu%40prod%2Fq1').database).toBe('sales?eu@prod/q1')
    expect(parseConnectionUrl('postgres://u@h/first?dbname=second').database).toBe('second')
  })

  it('decodes escapes in a password that also holds a space', () => {
    expect(parseConnectionUrl('postgres://u:a%4Ab c@h/db').password).toBe('aJb c')
  })

  it('keeps sslmode=require as libpq means it (TLS without verification), not as pg reads it (verify-full)', () => {
    expect(parseConnectionUrl('postgres://u@h/db?sslmode=require').sslMode).toBe('require')
    expect(tlsOptionsFor({ mode: 'require' })).toEqual({ rejectUnauthorized: false })
  })

  it.each([
    ['postgres://u:p%zz@h/db', 'url'],
    ['postgres://u@h/db%E0%A4', 'url.database'],
    ['not a url', 'url'],
    ['mysql://u@h/db', 'url'],
    ['postgres://u@h:99999/db', 'url'],
    ['postgres://u@h/db?sslmode=sometimes', 'url.sslmode'],
    ['postgres://u@h/db?pool_size=3', 'url.pool_size'],
    ['postgres://u@h/db?connect_timeout=-1', 'url.connect_timeout'],
    ['postgres://u@h/a/b', 'url.database'],
  ])('rejects %s with a ConfigError naming %s', (url, path) => {
    expect(configError(() => connect(url)).path).toBe(path)
  })

  it('names the environment variable when the URL came from one', () => {
    const saved = process.env.SOURCE_DATABASE_URL
    try {
      delete process.env.SOURCE_DATABASE_URL
      expect(configError(() => connectSource()).path).toBe('SOURCE_DATABASE_URL')
      process.env.SOURCE_DATABASE_URL = 'postgres://u@h/db?sslmode=bogus'
      expect(configError(() => connectSource()).path).toBe('SOURCE_DATABASE_URL.sslmode')
    } finally {
      if (saved === undefined) delete process.env.SOURCE_DATABASE_URL
      else process.env.SOURCE_DATABASE_URL = saved
    }
  })
})

describe('connection options', () => {
  it.each([
    [{ url: 'postgres://u@h/db', pool: { max: -1 } }, 'pool.max'],
    [{ url: 'postgres://u@h/db', pool: { min: 5, max: 2 } }, 'pool.min'],
    [{ url: 'postgres://u@h/db', pool: { acquireTimeoutMs: 0 } }, 'pool.acquireTimeoutMs'],
    [{ url: 'postgres://u@h/db', ssl: { mode: 'always' } }, 'ssl.mode'],
    [{ url: 'postgres://u@h/db', timeouts: { statementMs: 1.5 } }, 'timeouts.statementMs'],
    [{ url: 'postgres://u@h/db', settings: { 'work_mem; drop': '1' } }, 'settings.work_mem; drop'],
    [{ url: 'postgres://u@h/db', port: 0 }, 'port'],
    [{ url: 'postgres://u@h/db', poolSize: 3 }, ''],
  ])('rejects %j with a ConfigError naming the field', (options, path) => {
    const error = configError(() => connect(options as never))
    expect(error.path).toBe(path)
    expect(error.code).toBe('CONFIG_INVALID')
  })

  it('lets explicit fields win over the URL', () => {
    const conn = connect({ url: 'postgres://a@h1:5432/d1?application_name=x', host: 'h2', database: 'd2', applicationName: 'y' })
    expect(conn.settings).toMatchObject({ host: 'h2', database: 'd2', user: 'a', applicationName: 'y' })
  })

  it('sends timeouts and session settings in the startup packet, escaping spaces', () => {
    const conn = connect({
      url: 'postgres://a@h/d',
      timeouts: { statementMs: 1000, lockMs: 200 },
      settings: { work_mem: '64MB', search_path: 'a, b', jit: false },
    })
    expect(conn.settings.settings).toMatchObject({ statement_timeout: '1000', lock_timeout: '200', work_mem: '64MB', jit: 'off' })
    expect(startupOptions({ search_path: 'a, b' })).toBe('-c search_path=a,\\ b')
  })

  it('never shows the password: not in the label, JSON, inspect, or settings', () => {
    const conn = connect(`postgresql://etl:${SECRET}@db.internal:5432/shop`)
    expect(conn.label).toBe('postgresql://etl@db.internal:5432/shop')
    expect(String(conn)).toBe(conn.label)
    for (const text of [conn.label, JSON.stringify(conn), inspect(conn, { depth: 10, showHidden: true }), String(conn)]) {
      expect(text).not.toContain(SECRET)
    }
  })

  it('does not echo the URL (which may hold a password) in config errors', () => {
    const error = configError(() => connect(`postgresql://etl:${SECRET}@h/db?sslmode=nope`))
    expect(error.message).not.toContain(SECRET)
    expect(inspect(error)).not.toContain(SECRET)
  })

  it('does not echo any part of a password that holds an unescaped "?", "&", "#" or "/"', () => {
    for (const password of ['Pw?7f3c1d&zz=1', 'Pw#7f3c1d', 'Pw/7f3c1d', '12?3456']) {
      const error = configError(() => parseConnectionUrl(`postgresql://app:${password}@db.internal:5432/shop`))
      for (const piece of password.split(/[?&#/=]/).filter((part) => part.length >= 3)) {
        expect(error.message).not.toContain(piece)
        expect(error.path).not.toContain(piece)
      }
    }
    // An "@" in a parameter's value is no such case.
    expect(parseConnectionUrl('postgresql://db.internal:5432/shop?application_name=etl@night').applicationName).toBe('etl@night')
  })

  it('redacts passwords from URLs and key/value strings', () => {
    expect(redact(`postgres://u:${SECRET}@h/db and password=${SECRET} x`)).toBe('postgres://u@h/db and password=*** x')
  })

  it('redacts passwords holding unencoded @, :, / or #, and those of several hosts', () => {
    // pg-connection-string reads the user info up to the authority's last '@': this URL connects with password p@ss:w0rd.
    expect(redact('no slot "postgresql://etl:p@ss:w0rd@db.internal:5432/shop" here')).toBe('no slot "postgresql://etl@db.internal:5432/shop" here')
    expect(redact('postgresql://u:pw@h1,u2:pw2@h2/db')).toBe('postgresql://u@h2/db')
    expect(redact('bad URL postgresql://etl:pa/ss@h/db given')).toBe('bad URL postgresql://etl@h/db given')
    expect(redact('postgresql://etl:pa#ss@h/db')).toBe('postgresql://etl@h/db')
    // JSON lines keep their shape: a quote ends a URL.
    expect(redact('{"from":"postgresql://a:x@s/db","to":"postgresql://b:y@w/db"}')).toBe('{"from":"postgresql://a@s/db","to":"postgresql://b@w/db"}')
    // What is not a password stays.
    expect(redact('postgresql://db.internal:5432/shop?application_name=etl')).toBe('postgresql://db.internal:5432/shop?application_name=etl')
    expect(redact('postgresql://etl@db.internal/shop')).toBe('postgresql://etl@db.internal/shop')
    for (const url of ['postgresql://etl:p@ss:w0rd@h/db', 'postgresql://u:pw@h1,u2:pw2@h2/db', 'postgresql://etl:pa/ss@h/db']) {
      expect(redact(url)).not.toMatch(/p@ss|w0rd|pw2?@|pa\/ss/)
    }
  })
})

describe('sslmode', () => {
  it('maps each mode to TLS options like libpq', () => {
    expect(tlsOptionsFor({ mode: 'disable' })).toBe(false)
    expect(tlsOptionsFor({ mode: 'prefer' })).toEqual({ rejectUnauthorized: false })
    expect(tlsOptionsFor({ mode: 'require' })).toEqual({ rejectUnauthorized: false })
    const verifyCa = tlsOptionsFor({ mode: 'verify-ca' }) as { rejectUnauthorized: boolean; checkServerIdentity: () => unknown }
    expect(verifyCa.rejectUnauthorized).toBe(true)
    expect(verifyCa.checkServerIdentity()).toBeUndefined()
    const verifyFull = tlsOptionsFor({ mode: 'verify-full' }) as Record<string, unknown>
    expect(verifyFull).toEqual({ rejectUnauthorized: true })
  })

  it('names the unreadable certificate file', () => {
    expect(configError(() => tlsOptionsFor({ mode: 'verify-full', rootCertFile: '/nonexistent/ca.pem' })).path).toBe('ssl.rootCertFile')
  })

  it('does not let pg read sslmode=require as verify-full', () => {
    const conn = connect('postgres://u@h/db?sslmode=require')
    expect(conn.settings.ssl.mode).toBe('require')
    expect(tlsOptionsFor(conn.settings.ssl)).toEqual({ rejectUnauthorized: false })
  })
})
