import { readFileSync } from 'node:fs'
import type { ConnectionOptions as TlsOptions } from 'node:tls'
import { ConfigError } from '../errors.js'
import type { SslOptions } from './options.js'

/**
 * The TLS options pg gets for an sslmode, following libpq's table
 * (https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION):
 * - disable: no TLS.
 * - prefer: TLS without verification when the server offers it, plain otherwise (decided per connection attempt).
 * - require: TLS, no verification (unless a root certificate is given: then as verify-ca, like libpq).
 * - verify-ca: TLS, the chain must lead to the root certificate (or the system store).
 * - verify-full: verify-ca plus the host name must match the certificate.
 */
export function tlsOptionsFor(ssl: SslOptions): TlsOptions | false {
  if (ssl.mode === 'disable') return false
  const files: TlsOptions = {}
  if (ssl.rootCertFile) files.ca = readPem(ssl.rootCertFile, 'ssl.rootCertFile')
  if (ssl.certFile) files.cert = readPem(ssl.certFile, 'ssl.certFile')
  if (ssl.keyFile) files.key = readPem(ssl.keyFile, 'ssl.keyFile')
  if (Boolean(ssl.certFile) !== Boolean(ssl.keyFile)) {
    throw new ConfigError(ssl.certFile ? 'ssl.keyFile' : 'ssl.certFile', 'a client certificate needs both certFile and keyFile')
  }
  const mode = ssl.mode === 'require' && ssl.rootCertFile ? 'verify-ca' : ssl.mode
  switch (mode) {
    case 'prefer':
    case 'require':
      return { ...files, rejectUnauthorized: false }
    case 'verify-ca':
      return { ...files, rejectUnauthorized: true, checkServerIdentity: () => undefined }
    case 'verify-full':
      return { ...files, rejectUnauthorized: true }
  }
  return false
}

function readPem(path: string, field: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (cause) {
    throw new ConfigError(field, `cannot read "${path}": ${(cause as Error).message}`, { cause })
  }
}
