/**
 * Settings every pg-datakit session starts with, so that values read and written as text are the same whatever
 * the server's or the process's defaults: UTC timestamps, ISO dates, shortest exact floats, hex bytea, `NULL` in an
 * array literal read as a NULL element (with `array_nulls = off` a warehouse read `{x,NULL}` as the string "NULL"),
 * money in the C locale's form on both sides (`lc_monetary` decides how `money` is written and read).
 * User settings are applied after these and may override them.
 */
export const SESSION_DEFAULTS: Readonly<Record<string, string>> = Object.freeze({
  TimeZone: 'UTC',
  DateStyle: 'ISO, MDY',
  IntervalStyle: 'postgres',
  extra_float_digits: '1',
  bytea_output: 'hex',
  array_nulls: 'on',
  lc_monetary: 'C',
})

/**
 * Renders settings as the startup packet's `options` (`-c name=value ...`), so they hold from the
 * first statement without an extra round trip. Spaces and backslashes are escaped as libpq expects
 * (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-OPTIONS).
 */
export function startupOptions(settings: Readonly<Record<string, string>>): string {
  return Object.entries(settings)
    .map(([name, value]) => `-c ${name}=${value.replace(/[\\ ]/g, '\\$&')}`)
    .join(' ')
}
