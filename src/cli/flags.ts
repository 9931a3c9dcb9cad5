import { z } from 'zod'

/** `--columns a,b,c`: a comma-separated list of column names, each trimmed, none empty. */
export const columnList = z
  .string()
  .transform((list) => list.split(',').map((column) => column.trim()))
  .pipe(z.array(z.string().min(1)).nonempty())
