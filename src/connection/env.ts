import { ConfigError } from '../errors.js'
import { connectTo, type Connection } from './connection.js'
import type { ConnectionOptions } from './options.js'

function fromEnv(variable: string, overrides: Omit<ConnectionOptions, 'url'>): Connection {
  const url = process.env[variable]
  if (!url) throw new ConfigError(variable, `environment variable ${variable} is not set; set it to a postgresql:// URL`)
  return connectTo({ ...overrides, url }, variable)
}

/** `connect()` to the URL in `SOURCE_DATABASE_URL`; `overrides` set the options the URL cannot carry. */
export function connectSource(overrides: Omit<ConnectionOptions, 'url'> = {}): Connection {
  return fromEnv('SOURCE_DATABASE_URL', overrides)
}

/** `connect()` to the URL in `WAREHOUSE_DATABASE_URL`; `overrides` set the options the URL cannot carry. */
export function connectWarehouse(overrides: Omit<ConnectionOptions, 'url'> = {}): Connection {
  return fromEnv('WAREHOUSE_DATABASE_URL', overrides)
}
