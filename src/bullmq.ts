/**
 * `pg-datakit/bullmq`: one extraction split across worker processes on BullMQ (Redis), exactly once. `bullmq` is an
 * optional peer dependency: only this entry point loads it. docs/scale-out.md.
 */
export { commitJobId, extractionWorker, pieceJobId, scaleOut } from './scale-out/bullmq.js'
export type { ExtractionWorker, ExtractionWorkerOptions, QueueOptions, ScaleOutOptions, ScaleOutProgress, ScaleOutReport } from './scale-out/bullmq.js'
