import { redact } from '../connection/redact.js'
import { DatakitError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Progress } from '../pipeline/report.js'
import type { ExitCode } from './exit-codes.js'

/**
 * Where a command writes. On a terminal: a progress bar redrawn in place and short human lines. Otherwise (a pipe, a
 * file, cron) and with `--json`: one JSON object per line on stdout, `{"event": ...}`, the last one the result or the
 * error. Every string passes through `redact()`, so no password reaches the output whatever a message holds.
 */
export interface Output {
  readonly json: boolean
  /** A JSON line in JSON mode; nothing on a terminal. */
  event(event: string, fields: Record<string, unknown>): void
  progress(progress: Progress): void
  /** The command's result: a JSON line, or the human text on a terminal. */
  result(event: string, value: object, human: () => string): void
  failure(error: unknown, exitCode: ExitCode): void
  /** What the library logs: JSON lines, or warnings and errors on stderr on a terminal. */
  readonly logger: Logger
}

export interface OutputStreams {
  readonly stdout: NodeJS.WriteStream
  readonly stderr: NodeJS.WriteStream
}

export function createOutput(json: boolean, streams: OutputStreams = process): Output {
  const { stdout, stderr } = streams
  const line = (event: string, fields: object) => stdout.write(`${jsonLine({ event, ...fields })}\n`)
  let bar: ProgressBar | undefined
  const clearBar = () => bar?.clear()
  const logTo = (level: 'debug' | 'info' | 'warn' | 'error') => (fields: Record<string, unknown>, message: string) => {
    if (json) line('log', { level, message, ...fields })
    else if (level === 'warn' || level === 'error') {
      clearBar()
      const detail = typeof fields.error === 'string' ? `: ${redact(fields.error)}` : ''
      stderr.write(`${level}: ${redact(message)}${detail}\n`)
    }
  }
  return {
    json,
    event: (event, fields) => {
      if (json) line(event, fields)
    },
    progress: (progress) => {
      if (json) {
        line('progress', progress)
        return
      }
      bar ??= new ProgressBar(stdout)
      bar.update(progress)
    },
    result: (event, value, human) => {
      if (json) line(event, value)
      else {
        bar?.done()
        stdout.write(`${redact(human())}\n`)
      }
    },
    failure: (error, exitCode) => {
      const described = describeError(error)
      if (json) line('error', { exitCode, ...described })
      else {
        bar?.done()
        stderr.write(`error${described.code ? ` ${described.code}` : ''} (exit ${exitCode}): ${redact(described.message)}\n`)
      }
    },
    logger: { debug: logTo('debug'), info: logTo('info'), warn: logTo('warn'), error: logTo('error') },
  }
}

/** A JSON line with every string redacted and bigints as text. */
export function jsonLine(value: unknown): string {
  return JSON.stringify(value, (_key, field: unknown) => (typeof field === 'string' ? redact(field) : typeof field === 'bigint' ? field.toString() : field))
}

/** What the JSON error line says: the class, its stable code, the step and context, never a password. */
export function describeError(error: unknown): { name: string; code?: string; message: string; step?: string; context?: object } {
  if (error instanceof DatakitError) {
    return { name: error.name, code: error.code, message: error.message, ...(error.step ? { step: error.step } : {}), context: error.context }
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    return { name: error.name, ...(typeof code === 'string' ? { code } : {}), message: error.message }
  }
  return { name: 'Error', message: String(error) }
}

/** The bar redrawn in place on a terminal, at most every 100 ms (row-path events come per batch). */
class ProgressBar {
  #last = 0
  #shown = false
  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(progress: Progress): void {
    const now = performance.now()
    if (!progress.final && now - this.#last < 100) return
    this.#last = now
    this.stream.write(`\r\x1b[2K${renderProgress(progress, this.stream.columns || 80)}`)
    this.#shown = true
  }

  clear(): void {
    if (this.#shown) this.stream.write('\r\x1b[2K')
    this.#shown = false
  }

  done(): void {
    if (this.#shown) this.stream.write('\n')
    this.#shown = false
  }
}

const number = new Intl.NumberFormat('en-US')

/**
 * One line of progress for a terminal `width` columns wide:
 * `[########------------]  42.0%  42,000 / 100,000 rows  12.3 MB/s  ETA 0:07`, or without a total
 * `42,000 rows  12.3 MB/s  0:03 elapsed`.
 */
export function renderProgress(progress: Progress, width: number): string {
  const seconds = progress.elapsedMs / 1000
  const rate = `${(seconds > 0 ? progress.bytes / 1e6 / seconds : 0).toFixed(1)} MB/s`
  const rows = `${number.format(progress.rows)}${progress.totalRows === undefined ? '' : ` / ${number.format(progress.totalRows)}`} rows`
  const time = progress.final
    ? `done in ${clock(seconds)}`
    : progress.etaSeconds !== undefined
      ? `ETA ${clock(progress.etaSeconds)}`
      : `${clock(seconds)} elapsed`
  const text = `${rows}  ${number.format(progress.rowsPerSecond)} rows/s  ${rate}  ${time}`
  if (progress.percent === undefined) return text.slice(0, Math.max(0, width - 1))
  const percent = `${progress.percent.toFixed(1).padStart(5)}%`
  // A bar of a fixed width, so it does not jump as the numbers grow; left out on a narrow terminal.
  const cells = 20
  if (width - 1 < cells + 3 + percent.length + 2 + text.length) return `${percent}  ${text}`.slice(0, Math.max(0, width - 1))
  const filled = Math.round((progress.percent / 100) * cells)
  return `[${'#'.repeat(filled)}${'-'.repeat(cells - filled)}] ${percent}  ${text}`
}

/** `m:ss`, or `h:mm:ss` from an hour. */
export function clock(totalSeconds: number): string {
  const whole = Math.max(0, Math.round(totalSeconds))
  const hours = Math.floor(whole / 3600)
  const minutes = Math.floor((whole % 3600) / 60)
  const secs = String(whole % 60).padStart(2, '0')
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${secs}` : `${minutes}:${secs}`
}
