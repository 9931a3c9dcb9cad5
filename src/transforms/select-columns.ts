import type { Shape } from '../contracts.js'
import { ConfigError } from '../errors.js'
import type { Column } from '../pg/types.js'

/** The columns a transform works on: the named ones (each must exist), or those `byDefault` picks. */
export function selectColumns(shape: Shape, names: readonly string[] | undefined, byDefault: (column: Column) => boolean, transform: string): Column[] {
  if (!names) return shape.columns.filter(byDefault)
  return names.map((name) => {
    const column = shape.columns.find((candidate) => candidate.name === name)
    if (!column) {
      throw new ConfigError(`${transform}.columns`, `there is no column "${name}" (columns: ${shape.columns.map((c) => c.name).join(', ')})`)
    }
    return column
  })
}

/** Refuses an added column that would collide with an existing one. */
export function checkNewColumns(shape: Shape, added: readonly string[], transform: string): void {
  for (const name of added) {
    if (shape.columns.some((column) => column.name === name)) {
      throw new ConfigError(transform, `it would add "${name}", but the stream already has a column of that name`)
    }
  }
}
