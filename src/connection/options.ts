import { z } from 'zod'
import { ConfigError } from '../errors.js'

/** libpq's sslmode values, with libpq's meaning (see docs/connections.md). */
export const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const
export type SslMode = (typeof SSL_MODES)[number]

const settingName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.]*$/, 'a setting name is letters, digits, "_" and "." only')

const millis = z.number().int().positive()

/** SSL options; file paths are read when the connection is opened. */
export const sslOptionsSchema = z.strictObject({
  mode: z.enum(SSL_MODES).default('prefer'),
  /** CA bundle (PEM file) that signs the server certificate; the system store when absent. */
  rootCertFile: z.string().min(1).optional(),
  /** Client certificate (PEM file) for certificate authentication. */
  certFile: z.string().min(1).optional(),
  /** Private key (PEM file) of the client certificate. */
  keyFile: z.string().min(1).optional(),
})

export const poolOptionsSchema = z
  .strictObject({
    min: z.number().int().nonnegative().default(0),
    max: z.number().int().positive().default(10),
    /** How long `acquire()` waits for a free connection before a `PoolTimeoutError`. */
    acquireTimeoutMs: millis.default(30_000),
    /** How long an idle pooled connection is kept open. */
    idleTimeoutMs: millis.default(10_000),
  })
  .refine((pool) => pool.min <= pool.max, { message: 'pool.min must not exceed pool.max', path: ['min'] })

export const timeoutOptionsSchema = z.strictObject({
  /** TCP connect plus authentication. */
  connectMs: millis.default(10_000),
  /** PostgreSQL `statement_timeout`; none when absent. */
  statementMs: millis.optional(),
  /** PostgreSQL `lock_timeout`; none when absent. */
  lockMs: millis.optional(),
  /** PostgreSQL `idle_in_transaction_session_timeout`; none when absent. */
  idleInTransactionMs: millis.optional(),
})

/** Everything `connect()` accepts as an object. Fields given here win over the same field in `url`. */
export const connectionOptionsSchema = z.strictObject({
  url: z.string().min(1).optional(),
  host: z.string().min(1).optional(),
  port: z.number().int().min(1).max(65_535).optional(),
  user: z.string().min(1).optional(),
  password: z.string().optional(),
  database: z.string().min(1).optional(),
  ssl: sslOptionsSchema.optional(),
  applicationName: z.string().max(63).optional(),
  pool: poolOptionsSchema.optional(),
  timeouts: timeoutOptionsSchema.optional(),
  /** Session settings sent at connection start (`work_mem`, `search_path`, ...). */
  settings: z.record(settingName, z.union([z.string(), z.number(), z.boolean()])).optional(),
})

export type ConnectionOptions = z.input<typeof connectionOptionsSchema>
export type SslOptions = z.output<typeof sslOptionsSchema>
export type PoolOptions = z.output<typeof poolOptionsSchema>
export type TimeoutOptions = z.output<typeof timeoutOptionsSchema>

/** Validates `input` against `schema`, turning the first problem into a `ConfigError` naming the field. */
export function parseOptions<S extends z.ZodType>(schema: S, input: unknown, prefix = ''): z.output<S> {
  const result = schema.safeParse(input)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const path = [prefix, ...(issue?.path ?? []).map(String)].filter(Boolean).join('.')
  // zod's own message, never the received value: option values may hold secrets.
  throw new ConfigError(path, issue?.message ?? 'invalid options')
}
