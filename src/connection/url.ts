import { ConfigError } from '../errors.js'
import { SSL_MODES, type SslMode } from './options.js'

/** The fields of a PostgreSQL connection URL, as pg-datakit understands them. */
export interface UrlFields {
  host?: string
  port?: number
  user?: string
  password?: string
  database?: string
  sslMode?: SslMode
  rootCertFile?: string
  certFile?: string
  keyFile?: string
  applicationName?: string
  connectTimeoutMs?: number
}

const KNOWN_PARAMETERS = new Set([
  'host',
  'port',
  'user',
  'password',
  'dbname',
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'application_name',
  'connect_timeout',
])

/**
 * Parses `postgres://` and `postgresql://` URLs the way libpq does for the parameters it lists
 * (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS).
 * pg's own URL parsing is not used: it treats `sslmode=require` as verify-full.
 * Errors never echo the URL, which may hold a password.
 */
export function parseConnectionUrl(url: string, field = 'url'): UrlFields {
  let parsed: URL
  // An unescaped "/", "?", "#" or "&" in the password ends the authority early: the rest of the password would then be
  // read as a path, query parameters or a fragment, and echoed in errors. Refuse such a URL without quoting any of it.
  // (An "@" later in a parameter's value is fine: then the authority is a host with, at most, a numeric port.)
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(url)?.[1]
  const cut = authority !== undefined && !authority.includes('@') && /:(?![0-9]*$)[^\]]*$/.test(authority)
  if (cut && url.slice(url.indexOf('//') + 2 + authority.length).includes('@')) {
    throw new ConfigError(
      field,
      'has an "@" after the host part: the user or password holds a "/", "?", "#" or "&" that is not percent-encoded; encode it (encodeURIComponent) or pass the password as an option',
    )
  }
  // libpq allows an empty host after credentials (`postgresql://user@/db?host=/socket`); WHATWG URL does not.
  const emptyHost = /^postgres(?:ql)?:\/\/[^/?#]*@(?=[/?#]|$)/i.test(url)
  try {
    parsed = new URL(emptyHost ? url.replace(/@(?=[/?#]|$)/, '@localhost') : url)
  } catch {
    throw new ConfigError(field, 'is not a valid URL; expected postgresql://user:password@host:port/database')
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new ConfigError(field, `has scheme "${parsed.protocol}"; expected postgresql:// or postgres://`)
  }
  const fields: UrlFields = {}
  const decode = (value: string, part: string): string => {
    try {
      return decodeURIComponent(value)
    } catch {
      throw new ConfigError(`${field}.${part}`, 'has a malformed percent-escape')
    }
  }
  if (parsed.hostname && !emptyHost) fields.host = decode(parsed.hostname.replace(/^\[(.*)\]$/, '$1'), 'host')
  if (parsed.port) fields.port = parsePort(parsed.port, `${field}.port`)
  if (parsed.username) fields.user = decode(parsed.username, 'user')
  if (parsed.password) fields.password = decode(parsed.password, 'password')
  const database = parsed.pathname.replace(/^\//, '')
  if (database.includes('/')) throw new ConfigError(`${field}.database`, 'must not contain "/"')
  if (database) fields.database = decode(database, 'database')

  for (const [name, value] of parsed.searchParams) {
    if (!KNOWN_PARAMETERS.has(name)) {
      if (/[@:]/.test(name)) throw new ConfigError(field, 'has a malformed query part (is a character of the password not percent-encoded?)')
      throw new ConfigError(
        `${field}.${name}`,
        `is not a supported URL parameter (supported: ${[...KNOWN_PARAMETERS].join(', ')})`,
      )
    }
    switch (name) {
      case 'host':
        fields.host = value
        break
      case 'port':
        fields.port = parsePort(value, `${field}.port`)
        break
      case 'user':
        fields.user = value
        break
      case 'password':
        fields.password = value
        break
      case 'dbname':
        fields.database = value
        break
      case 'sslmode':
        if (!(SSL_MODES as readonly string[]).includes(value)) {
          throw new ConfigError(`${field}.sslmode`, `"${value}" is not one of ${SSL_MODES.join(', ')}`)
        }
        fields.sslMode = value as SslMode
        break
      case 'sslrootcert':
        fields.rootCertFile = value
        break
      case 'sslcert':
        fields.certFile = value
        break
      case 'sslkey':
        fields.keyFile = value
        break
      case 'application_name':
        fields.applicationName = value
        break
      case 'connect_timeout': {
        const seconds = Number(value)
        if (!Number.isInteger(seconds) || seconds <= 0) {
          throw new ConfigError(`${field}.connect_timeout`, 'must be a positive whole number of seconds')
        }
        fields.connectTimeoutMs = seconds * 1000
        break
      }
    }
  }
  return fields
}

function parsePort(value: string, field: string): number {
  const port = Number(value)
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new ConfigError(field, 'must be a whole number from 1 to 65535')
  }
  return port
}
