/**
 * Partition bounds as `pg_get_expr(relpartbound, oid)` prints them
 * (https://www.postgresql.org/docs/current/sql-createtable.html#SQL-CREATETABLE-PARTITION):
 *   FOR VALUES FROM ('a', 1) TO ('b', MAXVALUE) | FOR VALUES IN ('x', NULL) |
 *   FOR VALUES WITH (modulus 4, remainder 1) | DEFAULT
 * Values are kept as PostgreSQL literal text (exact) and typed later with the key column's type.
 */
export type BoundValue = { readonly value: string } | 'MINVALUE' | 'MAXVALUE'

export type PartitionBound =
  | { readonly kind: 'range'; readonly from: readonly BoundValue[]; readonly to: readonly BoundValue[] }
  | { readonly kind: 'list'; readonly values: readonly (string | null)[] }
  | { readonly kind: 'hash'; readonly modulus: number; readonly remainder: number }
  | { readonly kind: 'default' }

export function parsePartitionBound(text: string): PartitionBound {
  const trimmed = text.trim()
  if (trimmed === 'DEFAULT') return { kind: 'default' }
  const hash = /^FOR VALUES WITH \(modulus (\d+), remainder (\d+)\)$/i.exec(trimmed)
  if (hash) return { kind: 'hash', modulus: Number(hash[1]), remainder: Number(hash[2]) }
  const list = /^FOR VALUES IN \((.*)\)$/is.exec(trimmed)
  if (list) {
    return {
      kind: 'list',
      values: splitValues(list[1] as string).map((item) => (item === 'NULL' ? null : literalText(item))),
    }
  }
  const range = /^FOR VALUES FROM \((.*)\) TO \((.*)\)$/is.exec(trimmed)
  if (range) {
    return { kind: 'range', from: splitValues(range[1] as string).map(boundValue), to: splitValues(range[2] as string).map(boundValue) }
  }
  throw new SyntaxError(`unrecognised partition bound: ${text}`)
}

function boundValue(item: string): BoundValue {
  if (item === 'MINVALUE' || item === 'MAXVALUE') return item
  return { value: literalText(item) }
}

/** `'it''s'` -> `it's`; `42` -> `42`; `'x'::type` -> `x`. */
function literalText(item: string): string {
  const quoted = /^'((?:[^']|'')*)'(?:::.+)?$/s.exec(item)
  if (quoted) return (quoted[1] as string).replace(/''/g, "'")
  return item.replace(/::.+$/, '')
}

/** Splits a comma-separated list of literals, respecting quotes and parentheses. */
function splitValues(text: string): string[] {
  const items: string[] = []
  let depth = 0
  let quoted = false
  let start = 0
  for (let index = 0; index < text.length; index++) {
    const char = text[index]
    if (quoted) {
      if (char === "'" && text[index + 1] === "'") index++
      else if (char === "'") quoted = false
    } else if (char === "'") quoted = true
    else if (char === '(') depth++
    else if (char === ')') depth--
    else if (char === ',' && depth === 0) {
      items.push(text.slice(start, index).trim())
      start = index + 1
    }
  }
  items.push(text.slice(start).trim())
  return items.filter((item) => item.length > 0)
}
