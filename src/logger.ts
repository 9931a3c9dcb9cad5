/**
 * Where pg-datakit writes what it does: pino, console and most loggers fit as they are
 * (`logger.info(fields, message)`). Fields are structured and never hold a password.
 */
export interface Logger {
  debug?(fields: Record<string, unknown>, message: string): void
  info(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
}

/** The logger used when none is given: it says nothing. */
export const silentLogger: Logger = Object.freeze({ info: () => undefined, warn: () => undefined, error: () => undefined })
