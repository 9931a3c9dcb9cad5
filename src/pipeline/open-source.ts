import type { OpenContext, OpenedSource, Source } from '../contracts.js'

/**
 * Opens a source for one run: through its `open()` when it has one, else (a source written before `open()`) by
 * asking its shape once and reading `batches()` / `copyText()` with the same context.
 */
export async function openSource<R>(source: Source<R>, ctx: OpenContext): Promise<OpenedSource<R>> {
  if (source.open) return source.open(ctx)
  const shape = await source.shape()
  return openedRead({
    shape,
    batches: () => source.batches(ctx),
    ...(source.copyText ? { copyText: () => source.copyText!(ctx) } : {}),
  })
}

/**
 * An opened source whose run holds nothing between `open()` and its first read (table, COPY and parallel sources:
 * their reads take and give back their own clients). The shape is the one planned at open.
 */
export function openedRead<R>(parts: Pick<OpenedSource<R>, 'shape' | 'batches' | 'copyText' | 'copyBinary' | 'estimate'>): OpenedSource<R> {
  const close = async () => undefined
  return Object.freeze({ ...parts, close, [Symbol.asyncDispose]: close })
}
