import type pg from 'pg'

/**
 * Destroys a client's socket at once. Used to cancel a running read (abort) and to abandon a client
 * whose protocol state is unknown (e.g. a COPY TO stream left early, which otherwise hangs the client).
 * The client must then be released with an error so the pool discards it.
 */
export function destroyClient(client: pg.ClientBase): void {
  const connection = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection
  connection?.stream?.destroy()
}
