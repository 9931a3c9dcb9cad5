import type { CheckpointKey } from './checkpoint.js'

/** A key as one string, for stores that keep checkpoints in a map or a JSON object. */
export const keyText = (key: CheckpointKey): string => JSON.stringify([key.source, key.schema, key.table, key.pipeline])
