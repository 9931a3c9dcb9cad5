import pg from 'pg'
import { CompiledQuery, Kysely } from 'kysely'
import { z } from 'zod'
import { ConfigError } from '../errors.js'
import { losslessTypes } from '../pg/type-parsers.js'
import { destroyClient } from '../pg/client-control.js'

/**
 * Borrowing: `connect(pool)` and `connect(kysely)` make a Connection over the caller's pg.Pool or Kysely instance. The
 * caller owns it: the Connection's `close()` waits for the clients it holds to go back and never ends it.
 *
 * What pg-datakit needs of a client it borrows is what its own pool's clients get at connection start: the lossless
 * type map (docs/types.md) and the session settings that fix how values are printed (UTC, ISO dates, shortest exact
 * floats, hex bytea), plus the user's settings and timeouts. A borrowed client has the lender's, so each one pg-datakit
 * takes gets them with `set_config` (one round trip) and has its own back (one more) when it is given back; the type
 * map goes with every query pg-datakit sends on it. The lender's own queries never see pg-datakit's settings.
 */

const millis = z.number().int().positive()

/** What `connect(pool, options)` and `connect(kysely, options)` accept. */
export const borrowedOptionsSchema = z.strictObject({
  /** Session settings for pg-datakit's use of a borrowed client (`work_mem`, `search_path`, ...). */
  settings: z
    .record(
      z.string().regex(/^[A-Za-z_][A-Za-z0-9_.]*$/, 'a setting name is letters, digits, "_" and "." only'),
      z.union([z.string(), z.number(), z.boolean()]),
    )
    .optional(),
  timeouts: z
    .strictObject({
      statementMs: millis.optional(),
      lockMs: millis.optional(),
      idleInTransactionMs: millis.optional(),
    })
    .optional(),
  /** How long `acquire()` waits for the lender to hand over a client before a `PoolTimeoutError`. */
  acquireTimeoutMs: millis.default(30_000),
})

export type BorrowedOptions = z.input<typeof borrowedOptionsSchema>

/** A client taken from a lender, and how to give it back (with an error: its state is unknown, drop it). */
export interface Loan {
  readonly client: pg.PoolClient
  giveBack(error?: Error): void
}

export interface Lender {
  readonly kind: 'pg.Pool' | 'Kysely'
  /** The lender's connection options where it has them (a pg.Pool's), for the label before the first client. */
  readonly hint: { host?: string; port?: number; user?: string; database?: string }
  take(): Promise<Loan>
}

/** Whether `value` is a node-postgres pool (this copy of pg's, or one shaped like it). */
export function isPgPool(value: unknown): value is pg.Pool {
  if (value instanceof pg.Pool) return true
  const candidate = value as Partial<Record<'connect' | 'end' | 'query', unknown>> & { options?: unknown; totalCount?: unknown }
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof candidate.connect === 'function' &&
    typeof candidate.end === 'function' &&
    typeof candidate.query === 'function' &&
    typeof candidate.options === 'object' &&
    typeof candidate.totalCount === 'number'
  )
}

export function isKysely(value: unknown): value is Kysely<unknown> {
  return value instanceof Kysely
}

export function poolLender(pool: pg.Pool): Lender {
  const options = pool.options as pg.PoolConfig
  const hint: Lender['hint'] = {}
  if (typeof options.host === 'string') hint.host = options.host
  if (typeof options.port === 'number') hint.port = options.port
  if (typeof options.user === 'string') hint.user = options.user
  if (typeof options.database === 'string') hint.database = options.database
  return {
    kind: 'pg.Pool',
    hint,
    async take() {
      const client = await pool.connect()
      return { client, giveBack: (error) => client.release(error) }
    },
  }
}

/**
 * Kysely hands out no pg client, only its own connection objects, and pg-datakit needs the client itself (COPY,
 * cursors, cancelling a statement). A client is held through Kysely's public `connection().execute()` (so the
 * Kysely instance's pool counts it as busy) and found by sending a marker through it: pg's `Client#query` is wrapped,
 * once, to answer the marker with the client it arrived on and to pass everything else through untouched.
 */
export function kyselyLender(db: Kysely<unknown>): Lender {
  if (db.isTransaction) {
    throw new ConfigError('connection', 'is a Kysely transaction; pass the Kysely instance (pg-datakit takes several connections of its own)')
  }
  return {
    kind: 'Kysely',
    hint: {},
    take: () =>
      new Promise<Loan>((resolve, reject) => {
        let handed = false
        let giveBack!: (error?: Error) => void
        const returned = new Promise<Error | undefined>((settle) => {
          giveBack = settle
        })
        db.connection()
          .execute(async (held) => {
            const client = await clientOf(held)
            handed = true
            resolve({ client, giveBack })
            // Kysely gives the client back to its pool when this returns, with release() and no error: a client
            // whose state is unknown is closed first (and its 'error' heard), so its pool drops it instead of reusing it.
            const error = await returned
            if (error) await closed(client)
          })
          .catch((error: unknown) => {
            if (!handed) reject(error instanceof Error ? error : new Error(String(error)))
          })
      }),
  }
}

/** Destroys a client's socket and waits until pg has seen it end (then the client is not queryable). */
async function closed(client: pg.PoolClient): Promise<void> {
  if ((client as unknown as { _ended?: boolean })._ended) return
  client.on('error', () => undefined)
  const ended = new Promise<void>((settle) => {
    client.once('end', () => settle())
    setTimeout(settle, 5_000).unref()
  })
  destroyClient(client)
  await ended
}

/** setTimeout's largest delay, about 24.8 days: a borrowed client's `query_timeout` that never fires. */
const NO_QUERY_TIMEOUT = 2_147_483_647

const CAPTURE = Symbol('pg-datakit: the client this query arrived on')
type Capturing = { [CAPTURE]: (client: pg.PoolClient) => void }
let wrapped = false

async function clientOf(held: Kysely<unknown>): Promise<pg.PoolClient> {
  if (!wrapped) {
    wrapped = true
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with apply(this), on the client it belongs to
    const query = pg.Client.prototype.query as (this: pg.Client, ...args: unknown[]) => unknown
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      const first = args[0] as Partial<Capturing> | null | undefined
      if (first && typeof first === 'object' && typeof first[CAPTURE] === 'function') {
        first[CAPTURE](this as pg.PoolClient)
        return Promise.resolve({ command: 'SELECT', rowCount: 0, rows: [], fields: [] })
      }
      return query.apply(this, args)
    } as typeof pg.Client.prototype.query
  }
  let client: pg.PoolClient | undefined
  // A String object: the application's Kysely logger sees (and may `.trim()`) a string, and the wrapper its symbol.
  const marker: unknown = Object.assign(new String('/* pg-datakit: finding the client it holds */ select 1'), {
    [CAPTURE]: (found: pg.PoolClient) => (client = found),
  } satisfies Capturing)
  // Through another copy of pg, the marker reaches pg unwrapped, which refuses it (a query needs text): that is the
  // case the ConfigError below names, not a connection failure to retry. Any other failure is the connection's.
  const refused = await held.executeQuery({ ...CompiledQuery.raw(''), sql: marker as string }).then(
    () => undefined,
    (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
  )
  if (!client && refused && !/must have either text or a name/i.test(refused.message)) throw refused
  if (!client) {
    throw new ConfigError(
      'connection',
      "is a Kysely instance whose clients are not this pg package's: borrow a Kysely on PostgresDialect over a pg.Pool of the same pg pg-datakit uses (it is a peer dependency), or pass the pg.Pool",
    )
  }
  return client
}

/**
 * Lends a borrowed client to pg-datakit: the lossless type map on every query sent through it, pg-datakit's
 * session settings for as long as it holds it (the client's own restored on `release()`), and a listener for the
 * client's 'error' event while held (a checked-out client has none, and an unheard one would crash the process).
 */
export async function lend(loan: Loan, settings: Readonly<Record<string, string>>): Promise<pg.PoolClient> {
  const { client } = loan
  // pg sends every query of a `binary: true` client in binary, whatever the query asks, and pg-datakit reads text.
  if ((client as unknown as { binary?: boolean }).binary) {
    loan.giveBack()
    throw new ConfigError(
      'connection',
      "is a pool whose clients read results in binary (binary: true): pg-datakit's queries read text; lend it a pool without that option",
    )
  }
  const onError = () => undefined
  client.on('error', onError)
  const names = Object.keys(settings)
  let previous: { name: string; previous: string | null }[]
  try {
    previous = (
      await client.query<{ name: string; previous: string | null }>({
        // MATERIALIZED: each setting's value is read before the same row sets it.
        text: `with wanted as materialized (
                 select name, value, current_setting(name, true) as previous from unnest($1::text[], $2::text[]) as w(name, value))
               select name, previous, set_config(name, value, false) from wanted`,
        values: [names, names.map((name) => settings[name])],
      })
    ).rows
  } catch (error) {
    client.removeListener('error', onError)
    loan.giveBack(error as Error)
    throw error
  }
  let released = false
  const release = (error?: Error | boolean) => {
    if (released) return
    released = true
    const failure = error instanceof Error ? error : error ? new Error('pg-datakit: client released with an error') : undefined
    if (failure) {
      // The client is dropped: its 'error' listener stays, for the socket's end that may still come.
      loan.giveBack(failure)
      return
    }
    client
      .query({
        text: "select set_config(name, coalesce(previous, ''), false) from unnest($1::text[], $2::text[]) as p(name, previous)",
        values: [previous.map((row) => row.name), previous.map((row) => row.previous)],
      })
      .then(
        () => {
          client.removeListener('error', onError)
          loan.giveBack()
        },
        (restoreError: unknown) => {
          client.removeListener('error', onError)
          loan.giveBack(restoreError instanceof Error ? restoreError : new Error(String(restoreError)))
        },
      )
  }
  // pg's overloads, loosened: the arguments are passed on as they came, with the type map added to a text query.
  // The lender's client-side `query_timeout` is not pg-datakit's (a COPY of a large table runs for minutes): pg reads
  // a query's own before the client's, so each query carries one too long to fire (setTimeout's largest delay).
  const send = client.query.bind(client) as (...args: unknown[]) => unknown
  const lenderTimeout = (client as unknown as { connectionParameters?: { query_timeout?: number } }).connectionParameters?.query_timeout
  const timeout = lenderTimeout ? { query_timeout: NO_QUERY_TIMEOUT } : {}
  const query = (config: unknown, ...rest: unknown[]): unknown => {
    if (typeof config === 'string') return send({ text: config, types: losslessTypes, ...timeout }, ...rest)
    if (config && typeof config === 'object' && typeof (config as { submit?: unknown }).submit !== 'function') {
      return send({ ...('types' in config ? {} : { types: losslessTypes }), ...timeout, ...config }, ...rest)
    }
    // A cursor or a COPY stream (a submittable): the timeout is read off the object itself.
    if (lenderTimeout && config && typeof config === 'object' && !('query_timeout' in config)) Object.assign(config, timeout)
    return send(config, ...rest)
  }
  return new Proxy(client, {
    get(target, property) {
      if (property === 'release') return release
      if (property === 'query') return query
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
}
