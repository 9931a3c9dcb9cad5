import { mkdirSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api'
import { AbortedError, DatakitError, PathNotWritableError, SinkWriteError, UnrepresentableValueError, type ErrorContext, type Step } from '../../errors.js'
import { registerArrayFunction } from './array-function.js'
import { VALUE_ERROR_PREFIX } from './types.js'

interface Open {
  readonly instance: Promise<DuckDBInstance>
  users: number
}

/**
 * One DuckDB instance per database file in this process, shared by everyone using it and closed when the last one is
 * done. DuckDB locks its file against other processes, and two instances of one file in one process would each think
 * they own it. Closing when unused gives the file back to other processes (an analyst's DuckDB) between runs.
 */
const instances = new Map<string, Open>()

/**
 * The name a database file is attached under. DuckDB names a file's database after the file, so `bronze.duckdb` opened
 * directly makes a catalog `bronze` that clashes with the schema `bronze` ("Ambiguous reference to catalog or schema");
 * attached under a fixed name, any file name works with any schema.
 */
const CATALOG = 'pgdk_warehouse'

/** An in-memory instance with the file attached as `CATALOG`. */
async function attached(path: string): Promise<DuckDBInstance> {
  const instance = await DuckDBInstance.create(':memory:')
  try {
    const connection = await instance.connect()
    try {
      await connection.run(`ATTACH '${path.replace(/'/g, "''")}' AS ${CATALOG}`)
    } finally {
      connection.closeSync()
    }
  } catch (error) {
    instance.closeSync()
    throw error
  }
  return instance
}

/** `:memory:` for a private in-memory database, else the file's absolute path (its directory is created). */
const keyOf = (path: string) => (path === ':memory:' ? path : resolve(path))

/**
 * Runs `fn` on a new connection to the DuckDB database at `path` (created when missing), with the array function
 * registered and the session in UTC; closes the connection, and the instance when no one else uses it. An abort
 * interrupts the running statement.
 */
export async function withDuckDB<T>(
  path: string,
  fn: (connection: DuckDBConnection) => Promise<T>,
  options: { signal?: AbortSignal; step?: Step; context?: ErrorContext } = {},
): Promise<T> {
  const key = keyOf(path)
  const { step = 'sink', context = {} } = options
  let open = instances.get(key)
  if (!open || key === ':memory:') {
    if (key !== ':memory:') {
      try {
        mkdirSync(dirname(key), { recursive: true })
      } catch (error) {
        throw fileError(error, key, step, context)
      }
    }
    open = { instance: key === ':memory:' ? DuckDBInstance.create(key) : attached(key), users: 0 }
    if (key !== ':memory:') instances.set(key, open)
  }
  open.users++
  try {
    const instance = await open.instance.catch((error: unknown) => {
      throw duckdbError(error, step, { ...context, path: key })
    })
    const connection = await instance.connect()
    const interrupt = () => connection.interrupt()
    options.signal?.addEventListener('abort', interrupt, { once: true })
    try {
      registerArrayFunction(connection)
      if (key !== ':memory:') await connection.run(`USE ${CATALOG}`)
      await connection.run(`SET TimeZone = 'UTC'`)
      return await fn(connection)
    } finally {
      options.signal?.removeEventListener('abort', interrupt)
      connection.closeSync()
    }
  } finally {
    if (--open.users === 0) {
      if (instances.get(key) === open) instances.delete(key)
      await open.instance.then((instance) => instance.closeSync()).catch(() => undefined)
    }
  }
}

/** A file-system error of a file sink as the error a caller can act on. */
export function fileError(error: unknown, path: string, step: Step, context: ErrorContext): DatakitError {
  if (error instanceof DatakitError) return error
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOTDIR' || code === 'EEXIST' || code === 'ENOSPC') {
    return new PathNotWritableError(
      `cannot write ${path} (${code}): ${(error as Error).message}. Give the process write access to the directory, or choose another path`,
      { step, context: { ...context, path }, cause: error },
    )
  }
  return new SinkWriteError(`${(error as Error).message} (path=${path})`, { step, context: { ...context, path }, cause: error })
}

/** What DuckDB threw, as the most specific pg-datakit error. */
export function duckdbError(error: unknown, step: Step, context: ErrorContext, signal?: AbortSignal): DatakitError {
  if (error instanceof DatakitError) return error
  const message = error instanceof Error ? error.message : String(error)
  const options = { step, context, cause: error }
  if (signal?.aborted || /INTERRUPT Error|Interrupted/i.test(message)) {
    return new AbortedError('extraction aborted; the DuckDB database was left as it was', options)
  }
  const value = message.indexOf(VALUE_ERROR_PREFIX)
  if (value !== -1) {
    const text = message.slice(value + VALUE_ERROR_PREFIX.length).trim()
    const column = /^column "((?:[^"]|"")*)"/.exec(text)?.[1]
    return new UnrepresentableValueError(`${text}; nothing was written`, { ...options, context: { ...context, column } })
  }
  if (/Conversion Error|out of range/i.test(message)) {
    return new UnrepresentableValueError(`DuckDB cannot hold a value of the stream: ${message}; nothing was written`, options)
  }
  if (/Could not set lock|Conflicting lock/i.test(message)) {
    return new SinkWriteError(
      `another process has the DuckDB database ${String(context.path ?? '')} open for writing (DuckDB allows one writing process): ${message}. Close it and run again`,
      options,
    )
  }
  if (/Permission denied|Read-only file system|Not a directory|Cannot open file/i.test(message)) {
    return new PathNotWritableError(`${message}. Give the process write access to the directory, or choose another path`, options)
  }
  return new SinkWriteError(message, options)
}
