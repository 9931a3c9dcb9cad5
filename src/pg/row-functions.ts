import type { Column } from './types.js'

type Row = Record<string, unknown>

/**
 * The prototype of every row pg-datakit builds: an empty, frozen object whose own prototype is null, so a row
 * inherits nothing. Column names are data from the source: on a `{}` row, `row['__proto__'] = value` sets the
 * prototype (or does nothing) instead of storing the value, and reading an absent `constructor` or `toString` gives
 * Object.prototype's member. On a row built here every column is an own property and nothing else is there to find.
 *
 * Why not `Object.create(null)` for each row: V8 keeps such objects as dictionaries. Rows built by one constructor
 * whose prototype is this object share one hidden class per shape, as object literals did: building and reading
 * 1M rows of 10 columns took 45 ms this way, 270 ms with `Object.create(null)` and 450 ms with `{ __proto__: null }`.
 */
export const ROW_PROTOTYPE: object = Object.freeze(Object.create(null) as object)

/** True for rows built here (or any object without Object.prototype in its chain). */
export function isSafeRow(row: object): boolean {
  const prototype = Object.getPrototypeOf(row) as object | null
  return prototype === ROW_PROTOTYPE || prototype === null
}

/** The names a plain object inherits (`__proto__`, `constructor`, `toString`, ...). */
const INHERITED: ReadonlySet<string> = new Set(Object.getOwnPropertyNames(Object.prototype))

const key = (name: string): string => JSON.stringify(name)

/**
 * Reads column `name` of the row in variable `r`. A row may come from user code as a plain object: for a name it
 * would inherit, only an own property counts, so a missing `constructor` reads as undefined, not as `Object`.
 */
function read(name: string, r = 'r'): string {
  return INHERITED.has(name) ? `(hasOwn(${r}, ${key(name)}) ? ${r}[${key(name)}] : undefined)` : `${r}[${key(name)}]`
}

/**
 * Compiles a row constructor: `assignments[i]` is the expression stored under `names[i]`, over `parameters`.
 * Values in `bound` are visible to the generated code under their keys. Column names enter the code only as JSON
 * string literals, which cannot break out of the literal. `this[name] = ...` in a constructor always defines an own
 * property, whatever the name, because the prototype chain (ROW_PROTOTYPE) has no setter to hit.
 */
export function compileRow<F>(
  names: readonly string[],
  assignments: readonly string[],
  parameters: readonly string[],
  bound: Readonly<Record<string, unknown>> = {},
): F {
  const list = parameters.join(', ')
  const body = names.map((name, index) => `this[${key(name)}] = ${assignments[index]};`).join('\n')
  const code = `function Row(${list}) {\n${body}\n}\nRow.prototype = P\nreturn function row(${list}) { return new Row(${list}) }`
  const bindings = Object.entries(bound)
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- compiles a row constructor once per shape; names go in through key()
  const factory = new Function('P', 'hasOwn', ...bindings.map(([name]) => name), code) as (...args: unknown[]) => F
  return factory(ROW_PROTOTYPE, Object.hasOwn, ...bindings.map(([, value]) => value))
}

const names = (columns: readonly Column[]): string[] => columns.map((column) => column.name)

/** `values => row`: a row of `columns` from their values in order (e.g. a pg `rowMode: 'array'` row). */
export function rowFromValues(columns: readonly Column[]): (values: readonly unknown[]) => Row {
  return compileRow(
    names(columns),
    columns.map((_, index) => `v[${index}]`),
    ['v'],
  )
}

/**
 * The row itself when it inherits nothing, else a copy that does not: its own enumerable properties (all of them, in
 * order, shape or not) on an object whose chain is ROW_PROTOTYPE, where assigning `__proto__` defines a property.
 */
export function safeRow<R extends object>(row: R): R {
  return isSafeRow(row) ? row : Object.assign<R, R>(Object.create(ROW_PROTOTYPE) as R, row)
}

/** `(row, added) => ({ ...row, [added names]: added values })` for rows of `columns`, without the spread. */
export function withColumns(columns: readonly Column[], added: readonly string[]): (row: Row, values: readonly unknown[]) => Row {
  return compileRow([...names(columns), ...added], [...names(columns).map((name) => read(name)), ...added.map((_, index) => `a[${index}]`)], ['r', 'a'])
}

/** `row => ({ ...row, ...extra })` for rows of `columns`, without the spread. */
export function extendRows(columns: readonly Column[], extra: Row): (row: Row) => Row {
  const added = Object.keys(extra)
  const values = added.map((name) => extra[name])
  const extend = withColumns(columns, added)
  return (row) => extend(row, values)
}

/** `row => [row[c1], row[c2], ...]` reading the columns in order, for encoders. */
export function readColumns(columns: readonly Column[]): (row: Row) => unknown[] {
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- compiles the reader once per shape; names go in through read()
  const factory = new Function(
    'hasOwn',
    `return function columns(r) { return [${names(columns)
      .map((name) => read(name))
      .join(', ')}] }`,
  ) as (hasOwn: typeof Object.hasOwn) => (row: Row) => unknown[]
  return factory(Object.hasOwn)
}

/**
 * `(row, added) => values` of the columns `names`, in order: a name in `positions` is read from `added` at that
 * position (a column an earlier fused transform added), any other from the row.
 */
export function gatherColumns(names: readonly string[], positions: ReadonlyMap<string, number>): (row: Row, added: readonly unknown[]) => unknown[] {
  const reads = names.map((name) => (positions.has(name) ? `a[${positions.get(name) as number}]` : read(name)))
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- compiles the gatherer once per shape; names go in through read()
  const factory = new Function('hasOwn', `return function gather(r, a) { return [${reads.join(', ')}] }`) as (
    hasOwn: typeof Object.hasOwn,
  ) => (row: Row, added: readonly unknown[]) => unknown[]
  return factory(Object.hasOwn)
}
