// pg-datakit/pg: the PostgreSQL building blocks pg-datakit's own sources and sinks are made of, for custom ones:
// COPY text decoding and encoding, the lossless type map, JSON text, identifiers, partition bounds. See
// docs/building-blocks.md. These follow the wire formats, so they may change in a minor release before 1.0 when a
// format detail calls for it; the root export ('pg-datakit') is the stable surface.
export type { Column } from './pg/types.js'
export { quoteIdent, qualifiedName } from './pg/identifiers.js'
export { typeParsersFor, losslessTypes } from './pg/type-parsers.js'
export { copyTextChunks, encodeRows, rowEncoder, valueToText, type RowEncoder } from './pg/copy-text-encoder.js'
export { toJsonText } from './pg/json-text.js'
export { CopyTextDecoder } from './pg/copy-text-decoder.js'
export { appendToLines } from './pg/copy-line-suffix.js'
export { parsePartitionBound, type BoundValue, type PartitionBound } from './pg/partition-bound.js'
