import {
  classifyError,
  ConnectionLostError,
  DatakitError,
  MissingPublicationError,
  SlotInvalidatedError,
  SourceQueryError,
  sqlStateOf,
  UnrepresentableValueError,
  type ErrorContext,
} from '../errors.js'

/**
 * What a failure of the replication stream means for whoever runs the capture, as one of pg-datakit's errors:
 * - the publication is gone from the WAL the slot must decode (dropped, or dropped and made again: decoding reads the
 *   catalog as it was at each change): `MissingPublicationError`, not retryable;
 * - the slot lost WAL it needs or was invalidated while streaming: `SlotInvalidatedError`, not retryable;
 * - a value larger than a JavaScript string can hold (about 512 MB of text): `UnrepresentableValueError`;
 * - the connection went away (walsender terminated, network): `ConnectionLostError`, retryable;
 * - anything else as `classifyError` sees it.
 */
export function classifyReplicationError(error: unknown, context: ErrorContext): DatakitError {
  if (error instanceof DatakitError) return error
  const message = error instanceof Error ? error.message : String(error)
  const state = sqlStateOf(error)
  const options = { step: 'source' as const, context, cause: error }
  if (state === '42704' && /publication/i.test(message)) {
    return new MissingPublicationError(
      `${message}: the publication was dropped (or dropped and made again) in WAL the slot still has to decode, so the slot cannot go on with it. ` +
        'Drop the slot and capture again with initialSnapshot (docs/cdc.md, "Publication dropped")',
      options,
    )
  }
  if (state === '58P01' || /can no longer get changes|has been invalidated|required WAL|already been removed/i.test(message)) {
    return new SlotInvalidatedError(
      `${message}: the slot lost WAL it needs, so changes were lost. Drop the slot and capture again with initialSnapshot (docs/cdc.md, "Slot invalidated")`,
      options,
    )
  }
  if (error instanceof RangeError && /Invalid string length/i.test(message)) {
    return new UnrepresentableValueError(
      'a change carries a value larger than a JavaScript string can hold (about 512 MB of text); such a column cannot be captured: leave it out of the publication (a column list)',
      options,
    )
  }
  const classified = classifyError(error, 'source', context, SourceQueryError)
  return classified instanceof SourceQueryError && /terminat|closed|ECONNRESET/i.test(classified.message)
    ? new ConnectionLostError(classified.message, options)
    : classified
}
