import { inspect } from 'node:util'
import { userInfo } from 'node:os'
import pg from 'pg'
import { Kysely, PostgresDialect } from 'kysely'
import { AbortedError, ConfigError, ConnectionError, DatakitError, PoolTimeoutError } from '../errors.js'
import { borrowedOptionsSchema, isKysely, isPgPool, kyselyLender, lend, poolLender, type BorrowedOptions, type Lender, type Loan } from './borrowed.js'
import { losslessTypes } from '../pg/type-parsers.js'
import {
  connectionOptionsSchema,
  parseOptions,
  poolOptionsSchema,
  sslOptionsSchema,
  timeoutOptionsSchema,
  type ConnectionOptions,
  type PoolOptions,
  type SslOptions,
  type TimeoutOptions,
} from './options.js'
import { redact } from './redact.js'
import { SESSION_DEFAULTS, startupOptions } from './session.js'
import { tlsOptionsFor } from './ssl.js'
import { parseConnectionUrl } from './url.js'

/** What a connection resolved to, with no password: safe to log and to store. */
export interface ConnectionSettings {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly database: string
  readonly ssl: SslOptions
  readonly applicationName: string
  readonly pool: PoolOptions
  readonly timeouts: TimeoutOptions
  /** Session settings, pg-datakit's defaults merged with the user's. */
  readonly settings: Readonly<Record<string, string>>
  /**
   * Set when the Connection borrows the caller's pg.Pool or Kysely instance (`connect(pool)`): then `ssl`, `pool`
   * (but `acquireTimeoutMs`) and `timeouts.connectMs` are not pg-datakit's to choose and show the defaults, and
   * `host`, `port`, `user` and `database` are what the server said on the first client borrowed.
   */
  readonly borrowed?: 'pg.Pool' | 'Kysely'
}

/**
 * A pool of connections to one PostgreSQL database. Sources and sinks take one; it is closed by its owner
 * (`await conn.close()` or `await using conn = connect(...)`).
 */
export class Connection implements AsyncDisposable {
  #label: string
  #settings: ConnectionSettings
  readonly #password: string | undefined
  /** The caller's pool or Kysely instance this Connection borrows clients from; it never ends it. */
  readonly #lender: Lender | undefined
  /** Borrowed clients not given back yet: `close()` waits for them (and their settings to be restored). */
  readonly #lent = new Set<Promise<void>>()
  #identified = false
  #pool: Promise<pg.Pool> | undefined
  #resolvedPool: pg.Pool | undefined
  /** The TLS options the pool settled on (for sslmode=prefer, after asking the server). */
  #ssl: pg.ClientConfig['ssl'] = false
  #closed = false

  /** `lender` is internal: `connect(pool)` and `connect(kysely)` pass it. */
  constructor(settings: ConnectionSettings, password: string | undefined, lender?: Lender) {
    this.#settings = Object.freeze(settings)
    this.#password = password
    this.#lender = lender
    this.#label = labelOf(settings)
  }

  /** The URL without the password, e.g. `postgresql://etl@db.internal:5432/shop`. */
  get label(): string {
    return this.#label
  }

  get settings(): ConnectionSettings {
    return this.#settings
  }

  /**
   * Takes a client from the pool, waiting at most `pool.acquireTimeoutMs`. The caller must `release()` it
   * (pass an error to `release(err)` to destroy a client whose state is unknown).
   */
  async acquire(signal?: AbortSignal): Promise<pg.PoolClient> {
    if (this.#closed) throw new ConnectionError(`connection ${this.label} is closed`, { step: 'connect' })
    const pending = this.#lender ? this.#borrow() : (await this.#getPool()).connect()
    let timer: NodeJS.Timeout | undefined
    let onAbort: (() => void) | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new PoolTimeoutError(
              `no connection to ${this.label} became free within ${this.settings.pool.acquireTimeoutMs} ms (${
                // A borrowed pool's size is its owner's: pg-datakit's pool.max says nothing about it.
                this.settings.borrowed
                  ? `the borrowed ${this.settings.borrowed}'s own pool is full; raise its max or acquireTimeoutMs`
                  : `pool max ${this.settings.pool.max}; raise pool.max or pool.acquireTimeoutMs`
              }), or run fewer extractions at once`,
              { step: 'connect', context: { database: this.settings.database } },
            ),
          ),
        this.settings.pool.acquireTimeoutMs,
      )
      if (signal) {
        onAbort = () => reject(new AbortedError('aborted while waiting for a connection', { step: 'connect' }))
        if (signal.aborted) onAbort()
        else signal.addEventListener('abort', onAbort, { once: true })
      }
    })
    try {
      return await Promise.race([pending, timeout])
    } catch (error) {
      // A client that arrives after we gave up goes straight back to the pool.
      pending.then(
        (client) => client.release(),
        () => undefined,
      )
      if (error instanceof PoolTimeoutError || error instanceof AbortedError) throw error
      throw this.#connectError(error)
    } finally {
      clearTimeout(timer)
      if (onAbort) signal?.removeEventListener('abort', onAbort)
    }
  }

  /** Runs `fn` with a client and always releases it; a failed `fn` destroys the client. */
  async withClient<T>(fn: (client: pg.PoolClient) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const client = await this.acquire(signal)
    let failure: Error | undefined
    try {
      return await fn(client)
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error))
      throw error
    } finally {
      client.release(failure)
    }
  }

  /** A plain query on a pooled client. Values are parsed with the lossless type map (docs/types.md). */
  async query<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values: readonly unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.withClient((client) => client.query<R>({ text, values: [...values] }))
  }

  /** A Kysely instance over this pool, for typed queries and for `querySource`. It does not own the pool. */
  kysely<DB>(): Kysely<DB> {
    return new Kysely<DB>({
      dialect: new PostgresDialect({
        pool: { connect: () => this.acquire(), end: async () => undefined },
      }),
    })
  }

  /**
   * A new client outside the pool on a replication connection (`replication=database`), for logical replication.
   * It speaks only the simple query protocol; the caller owns it and must `end()` it.
   */
  async replicationClient(): Promise<pg.Client> {
    if (this.#lender) {
      throw new ConfigError(
        'connection',
        `borrows a ${this.#lender.kind}, which cannot open replication connections: for change data capture, connect() with a URL or options`,
      )
    }
    await this.#getPool()
    // pgoutput sends values as the walsender's output functions print them, so the settings that shape that text are
    // pinned whatever the database or role says (DateStyle DMY swaps days and months, bytea_output=escape is not hex).
    // The user's session settings are left out: they are meant for queries, and a walsender takes few of them.
    const { types: _types, ...base } = this.#clientConfig()
    const client = new pg.Client({ ...base, options: startupOptions(SESSION_DEFAULTS), ssl: this.#ssl, replication: 'database' } as pg.ClientConfig)
    client.on('error', () => undefined)
    try {
      await client.connect()
    } catch (error) {
      throw this.#connectError(error)
    }
    return client
  }

  /** Pool statistics: open, idle and waiting clients (of a borrowed pool: the clients pg-datakit holds). */
  stats(): { total: number; idle: number; waiting: number } {
    if (this.#lender) return { total: this.#lent.size, idle: 0, waiting: 0 }
    const pool = this.#resolvedPool
    return pool ? { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount } : { total: 0, idle: 0, waiting: 0 }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    // A borrowed pool or Kysely instance stays open: its owner ends it. Only the clients pg-datakit holds are waited for.
    if (this.#lender) return void (await Promise.all(this.#lent))
    const pool = await this.#pool?.catch(() => undefined)
    await pool?.end()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  toJSON(): { label: string; settings: ConnectionSettings } {
    return { label: this.label, settings: this.settings }
  }

  /** The label (no password), so a Connection in a template string or a log line reads as its URL. */
  toString(): string {
    return this.label
  }

  [inspect.custom](): string {
    return `Connection <${this.label}>`
  }

  /** A client of the lender, with pg-datakit's session settings and type map for as long as it is held. */
  async #borrow(): Promise<pg.PoolClient> {
    const lender = this.#lender as Lender
    const loan = await lender.take()
    let returned!: () => void
    const back = new Promise<void>((settle) => {
      returned = settle
    })
    this.#lent.add(back)
    const tracked: Loan = {
      client: loan.client,
      giveBack: (error) => {
        loan.giveBack(error)
        this.#lent.delete(back)
        returned()
      },
    }
    const client = await lend(tracked, this.settings.settings)
    if (!this.#identified) {
      this.#identified = true
      try {
        const { rows } = await client.query<{ user: string; database: string; host: string | null; port: number | null }>(
          'select current_user as "user", current_database() as database, host(inet_server_addr()) as host, inet_server_port() as port',
        )
        const found = rows[0]
        if (found) {
          const settings = { ...this.#settings, user: found.user, database: found.database }
          if (found.host !== null) settings.host = found.host
          if (found.port !== null) settings.port = found.port
          this.#settings = Object.freeze(settings)
          this.#label = labelOf(settings)
        }
      } catch (error) {
        client.release(error as Error)
        throw error
      }
    }
    return client
  }

  #getPool(): Promise<pg.Pool> {
    this.#pool ??= this.#createPool().then((pool) => {
      this.#resolvedPool = pool
      return pool
    })
    // A failed probe must not poison later attempts.
    this.#pool.catch(() => {
      this.#pool = undefined
    })
    return this.#pool
  }

  /** What every client of this connection is opened with (TLS is added by the caller). */
  #clientConfig(): pg.ClientConfig {
    const { settings } = this
    const config: pg.ClientConfig = {
      host: settings.host,
      port: settings.port,
      user: settings.user,
      database: settings.database,
      application_name: settings.applicationName,
      connectionTimeoutMillis: settings.timeouts.connectMs,
      options: startupOptions(settings.settings),
      types: losslessTypes,
      keepAlive: true,
    }
    if (this.#password !== undefined) config.password = this.#password
    return config
  }

  async #createPool(): Promise<pg.Pool> {
    const { settings } = this
    const base = this.#clientConfig()
    let ssl = tlsOptionsFor(settings.ssl)
    if (settings.ssl.mode === 'prefer') ssl = (await this.#serverOffersTls(base, ssl)) ? ssl : false
    this.#ssl = ssl
    const pool = new pg.Pool({
      ...base,
      ssl,
      max: settings.pool.max,
      min: settings.pool.min,
      idleTimeoutMillis: settings.pool.idleTimeoutMs,
    })
    // A client whose connection dies (server restart, terminated backend, reset socket) emits 'error'. The
    // running query rejects with that error anyway; unheard, the event would crash the process.
    pool.on('error', () => undefined)
    pool.on('connect', (client) => client.on('error', () => undefined))
    return pool
  }

  /** sslmode=prefer: try TLS, fall back to plain only when the server says it has no TLS. */
  async #serverOffersTls(base: pg.ClientConfig, ssl: pg.ClientConfig['ssl']): Promise<boolean> {
    const probe = new pg.Client({ ...base, ssl })
    probe.on('error', () => undefined)
    try {
      await probe.connect()
      return true
    } catch (error) {
      if (/does not support SSL/i.test((error as Error).message)) return false
      throw this.#connectError(error)
    } finally {
      await probe.end().catch(() => undefined)
    }
  }

  #connectError(error: unknown): Error {
    if (error instanceof DatakitError) return error
    const message = error instanceof Error ? error.message : String(error)
    return new ConnectionError(`cannot connect to ${this.label}: ${redact(message)}`, {
      step: 'connect',
      cause: error,
      context: { host: this.settings.host, port: this.settings.port, database: this.settings.database },
    })
  }
}

/**
 * Opens (lazily) a pool to a PostgreSQL database from a URL or an options object.
 * Options are validated up front: a bad one throws a `ConfigError` naming the field.
 *
 * @example
 * const source = connect(process.env.SOURCE_DATABASE_URL)
 * const warehouse = connect({ url: process.env.WAREHOUSE_DATABASE_URL, pool: { max: 4 }, settings: { work_mem: '256MB' } })
 */
export function connect(input: string | ConnectionOptions | undefined, urlField?: string): Connection
/**
 * Borrows the caller's `pg.Pool`, or the pool under a `Kysely` instance (PostgresDialect): pg-datakit takes clients
 * from it and gives them back, and `close()` never ends it. While pg-datakit holds a client it has pg-datakit's
 * session settings (and `options.settings`, `options.timeouts`); the client's own are restored when it goes back.
 * A borrowed connection cannot open replication connections (change data capture). See docs/connections.md.
 *
 * @example
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
 * const source = connect(pool, { timeouts: { statementMs: 60_000 } })
 * await extract({ from: tableSource(source, { table: 'orders' }), to: memorySink() })
 * await source.close() // the pool stays open
 */
export function connect(borrowed: pg.Pool | Kysely<any>, options?: BorrowedOptions): Connection // eslint-disable-line @typescript-eslint/no-explicit-any -- any Kysely<DB>
export function connect(
  input: string | ConnectionOptions | pg.Pool | Kysely<any> | undefined, // eslint-disable-line @typescript-eslint/no-explicit-any -- any Kysely<DB>
  second?: BorrowedOptions | string,
): Connection {
  if (isPgPool(input) || isKysely(input)) {
    if (typeof second === 'string') throw new ConfigError('options', 'must be an options object')
    return borrow(input, second)
  }
  if (second !== undefined && typeof second !== 'string') {
    throw new ConfigError('options', 'a second argument is taken only with a borrowed pg.Pool or Kysely instance; put options in the first')
  }
  return connectTo(input, second ?? 'url')
}

function borrow(lender: pg.Pool | Kysely<unknown>, input: BorrowedOptions = {}): Connection {
  const options = parseOptions(borrowedOptionsSchema, input)
  const borrowedFrom = isPgPool(lender) ? poolLender(lender) : kyselyLender(lender)
  const settings: Record<string, string> = { ...SESSION_DEFAULTS, ...sessionSettings(options.timeouts ?? {}, options.settings ?? {}) }
  const { hint } = borrowedFrom
  const user = hint.user ?? 'unknown'
  return new Connection(
    {
      host: hint.host ?? 'unknown',
      port: hint.port ?? 5432,
      user,
      database: hint.database ?? user,
      ssl: parseOptions(sslOptionsSchema, {}),
      applicationName: 'pg-datakit',
      pool: parseOptions(poolOptionsSchema, { acquireTimeoutMs: options.acquireTimeoutMs }),
      timeouts: parseOptions(timeoutOptionsSchema, stripUndefined(options.timeouts ?? {})),
      settings: Object.freeze(settings),
      borrowed: borrowedFrom.kind,
    },
    undefined,
    borrowedFrom,
  )
}

/** The session settings the timeouts and the user's settings make (on top of pg-datakit's defaults). */
function sessionSettings(
  timeouts: { statementMs?: number | undefined; lockMs?: number | undefined; idleInTransactionMs?: number | undefined },
  user: Readonly<Record<string, string | number | boolean>>,
): Record<string, string> {
  const settings: Record<string, string> = {}
  if (timeouts.statementMs) settings.statement_timeout = String(timeouts.statementMs)
  if (timeouts.lockMs) settings.lock_timeout = String(timeouts.lockMs)
  if (timeouts.idleInTransactionMs) settings.idle_in_transaction_session_timeout = String(timeouts.idleInTransactionMs)
  for (const [name, value] of Object.entries(user)) {
    settings[name] = typeof value === 'boolean' ? (value ? 'on' : 'off') : String(value)
  }
  return settings
}

/** `connect()` for a URL or options; `urlField` names the URL in errors (`SOURCE_DATABASE_URL` for connectSource()). */
export function connectTo(input: string | ConnectionOptions | undefined, urlField: string): Connection {
  if (input === undefined || input === '') {
    throw new ConfigError(urlField, 'no connection given: pass a postgresql:// URL or an options object')
  }
  const options = parseOptions(connectionOptionsSchema, typeof input === 'string' ? { url: input } : input)
  const fromUrl = options.url ? parseConnectionUrl(options.url, urlField) : {}
  const env = process.env
  const user = options.user ?? fromUrl.user ?? env.PGUSER ?? userInfo().username
  const ssl = parseOptions(
    sslOptionsSchema,
    {
      mode: fromUrl.sslMode,
      rootCertFile: fromUrl.rootCertFile,
      certFile: fromUrl.certFile,
      keyFile: fromUrl.keyFile,
      ...stripUndefined(options.ssl ?? {}),
    },
    'ssl',
  )
  const timeouts = parseOptions(timeoutOptionsSchema, { connectMs: fromUrl.connectTimeoutMs, ...stripUndefined(options.timeouts ?? {}) }, 'timeouts')
  const pool = parseOptions(poolOptionsSchema, options.pool ?? {}, 'pool')
  const settings: Record<string, string> = { ...SESSION_DEFAULTS, ...sessionSettings(timeouts, options.settings ?? {}) }
  return new Connection(
    {
      host: options.host ?? fromUrl.host ?? env.PGHOST ?? 'localhost',
      port: options.port ?? fromUrl.port ?? (env.PGPORT ? Number(env.PGPORT) : 5432),
      user,
      database: options.database ?? fromUrl.database ?? env.PGDATABASE ?? user,
      ssl,
      applicationName: options.applicationName ?? fromUrl.applicationName ?? 'pg-datakit',
      pool,
      timeouts,
      settings: Object.freeze(settings),
    },
    options.password ?? fromUrl.password ?? env.PGPASSWORD,
  )
}

function labelOf(settings: ConnectionSettings): string {
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host
  return `postgresql://${encodeURIComponent(settings.user)}@${host.startsWith('/') ? '' : host}:${settings.port}/${encodeURIComponent(settings.database)}${host.startsWith('/') ? `?host=${encodeURIComponent(host)}` : ''}`
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}
