import { parse } from 'pg-connection-string'
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
 *
 * The authority (user, password, host, port, a socket directory as the host, IPv6 in brackets, an empty host) is
 * read by pg-connection-string, as pg reads it. Kept here, each because pg-connection-string gets it wrong for libpq
 * (test/connection-options.test.ts shows each case):
 * - the query parameters: only libpq's, strictly (a typo must not silently turn off TLS), and `sslmode` with libpq's
 *   meaning (pg reads `sslmode=require` as verify-full, and reads certificate files while parsing);
 *   `dbname` names the database (pg-connection-string ignores it);
 * - the database: every percent-escape decoded (pg-connection-string uses decodeURI, which leaves `%3F`, `%40`,
 *   `%2F`... encoded), and a "/" in it refused;
 * - a "%" not followed by two hex digits is refused (pg-connection-string keeps it as text and then, once the URL
 *   also holds a space, leaves escapes such as `%4A` undecoded).
 * Errors never echo the URL, which may hold a password.
 */
export function parseConnectionUrl(url: string, field = 'url'): UrlFields {
  if (!/^postgres(?:ql)?:\/\//i.test(url)) {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]
    throw new ConfigError(
      field,
      scheme ? `has scheme "${scheme}:"; expected postgresql:// or postgres://` : 'is not a valid URL; expected postgresql://user:password@host:port/database',
    )
  }
  // An unescaped "/", "?", "#" or "&" in the password ends the authority early: the rest of the password would then be
  // read as a path, query parameters or a fragment, and echoed in errors. Refuse such a URL without quoting any of it.
  // (An "@" later in a parameter's value is fine: then the authority is a host with, at most, a numeric port.)
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(url)?.[1] ?? ''
  const cut = !authority.includes('@') && /:(?![0-9]*$)[^\]]*$/.test(authority)
  if (cut && url.slice(url.indexOf('//') + 2 + authority.length).includes('@')) {
    throw new ConfigError(
      field,
      'has an "@" after the host part: the user or password holds a "/", "?", "#" or "&" that is not percent-encoded; encode it (encodeURIComponent) or pass the password as an option',
    )
  }
  if (/%(?![0-9a-f]{2})/i.test(url)) {
    throw new ConfigError(field, 'has a malformed percent-escape (a "%" not followed by two hex digits); write a literal "%" as %25')
  }
  const withoutFragment = url.replace(/#.*$/s, '')
  const queryAt = withoutFragment.indexOf('?')
  const base = queryAt === -1 ? withoutFragment : withoutFragment.slice(0, queryAt)
  const query = queryAt === -1 ? '' : withoutFragment.slice(queryAt + 1)

  const path = base.slice(base.indexOf('//') + 2 + authority.length)
  let parsed: ReturnType<typeof parse>
  try {
    // Only the authority goes to pg-connection-string (the parameters and the path are read below); spaces are
    // escaped first, as it would otherwise re-encode the whole URL.
    parsed = parse(`${base.slice(0, base.length - path.length).replace(/ /g, '%20')}/`)
  } catch {
    throw new ConfigError(field, 'is not a valid URL; expected postgresql://user:password@host:port/database')
  }
  const fields: UrlFields = {}
  if (parsed.host) fields.host = parsed.host
  if (parsed.port) fields.port = parsePort(parsed.port, `${field}.port`)
  if (parsed.user) fields.user = parsed.user
  if (parsed.password) fields.password = parsed.password
  const database = path.replace(/^\//, '')
  if (database.includes('/')) throw new ConfigError(`${field}.database`, 'must not contain "/"')
  if (database) {
    try {
      fields.database = decodeURIComponent(database)
    } catch {
      throw new ConfigError(`${field}.database`, 'has a percent-escape that is not UTF-8')
    }
  }

  for (const [name, value] of new URLSearchParams(query)) {
    if (!KNOWN_PARAMETERS.has(name)) {
      if (/[@:]/.test(name)) throw new ConfigError(field, 'has a malformed query part (is a character of the password not percent-encoded?)')
      throw new ConfigError(`${field}.${name}`, `is not a supported URL parameter (supported: ${[...KNOWN_PARAMETERS].join(', ')})`)
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
