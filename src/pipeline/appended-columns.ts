import type { AppendedColumns, Batch, Row, RunContext, Shape, Transform } from '../contracts.js'
import { gatherColumns, withColumns } from '../pg/row-functions.js'

/** `apply` of an appendColumns transform on its own: one row built per input row. */
export async function* applyAppended(
  batches: AsyncIterable<Batch<Row>>,
  shape: Shape,
  spec: AppendedColumns,
  added: readonly string[],
): AsyncGenerator<Batch<Row>> {
  const gather = gatherColumns(spec.reads, new Map())
  const extend = withColumns(shape.columns, added)
  for await (const batch of batches) yield { rows: batch.rows.map((row) => extend(row, spec.compute(gather(row, [])))) }
}

/**
 * Consecutive appendColumns transforms as one step: per batch, each transform computes its columns for every row (a
 * transform may read what an earlier one added), and then each row is built once, with all of them. `times[i]` gets
 * transform i's own time.
 */
export function fuseAppended(
  transforms: readonly Transform[],
  shapes: readonly Shape[],
  ctx: RunContext,
  times: { ms: number }[],
): (batches: AsyncIterable<Batch<Row>>) => AsyncGenerator<Batch<Row>> {
  const input = shapes[0] as Shape
  const addedNames: string[] = []
  const offsets: number[] = []
  const positions = new Map<string, number>()
  const steps = transforms.map((transform, index) => {
    const before = shapes[index] as Shape
    const after = shapes[index + 1] as Shape
    const spec = transform.appendColumns!(before, ctx)
    // Gathered before this transform's own columns are known: it reads the input and what earlier ones added.
    const gather = gatherColumns(spec.reads, positions)
    offsets.push(addedNames.length)
    for (const column of after.columns.slice(before.columns.length)) {
      positions.set(column.name, addedNames.length)
      addedNames.push(column.name)
    }
    return { spec, gather }
  })
  const width = addedNames.length
  const build = withColumns(input.columns, addedNames)
  return async function* (batches) {
    for await (const batch of batches) {
      const rows = batch.rows
      const added = new Array<unknown[]>(rows.length)
      for (let row = 0; row < rows.length; row++) added[row] = new Array<unknown>(width)
      for (let step = 0; step < steps.length; step++) {
        const { spec, gather } = steps[step]!
        const offset = offsets[step] as number
        const begin = performance.now()
        for (let row = 0; row < rows.length; row++) {
          const into = added[row] as unknown[]
          const values = spec.compute(gather(rows[row] as Row, into))
          for (let index = 0; index < values.length; index++) into[offset + index] = values[index]
        }
        ;(times[step] as { ms: number }).ms += performance.now() - begin
      }
      const out = new Array<Row>(rows.length)
      for (let row = 0; row < rows.length; row++) out[row] = build(rows[row] as Row, added[row] as unknown[])
      yield { rows: out }
    }
  }
}
