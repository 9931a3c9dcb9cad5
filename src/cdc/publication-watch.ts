import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { redact } from '../connection/redact.js'
import { PublicationChangedError } from '../errors.js'
import type { Logger } from '../logger.js'
import { capturedTables, recordCapturedTable } from './captured-tables.js'
import { copyPublishedTable, publishedTableKeys, publishedTables, tableKey } from './table-snapshot.js'

export interface PublicationWatchOptions {
  readonly slot: string
  readonly publication: string
  readonly schema: string
  /** `'snapshot'`: copy a newly published table into bronze; `'error'`: stop with `PublicationChangedError`. */
  readonly newTables: 'snapshot' | 'error'
  readonly logger: Logger
  readonly signal?: AbortSignal | undefined
  /** How often the publication itself is looked at between batches (tables that joined it but have no change yet). */
  readonly checkEveryMs?: number
}

/**
 * Keeps a capture's bronze tables complete when tables join its publication. A table added to a publication streams
 * only the changes made after it joined: its older rows would never reach bronze. So a capture that began with a
 * snapshot (and so promises complete tables) snapshots each table that joins, in the warehouse transaction of the
 * first batch after it is seen, before that batch's changes are applied: the table is copied as of now, and the
 * batch's (older) changes to it are applied on top, as every later one is. Each change sets a key's row to what the
 * source had at that change, so once the stream has passed the copy's moment, bronze equals the source again (rows
 * the source changed between the batch and the copy show their older version until then). docs/cdc.md says more.
 *
 * Seen: a Relation message of a table not snapshotted yet (it has a change in the batch), or the publication listing
 * it (looked at when the capture starts and then every `checkEveryMs`, 30 s by default).
 */
export class PublicationWatch {
  readonly #source: Connection
  readonly #options: PublicationWatchOptions
  readonly #known: Set<string>
  #checkedAt = Date.now()

  private constructor(source: Connection, options: PublicationWatchOptions, known: Set<string>) {
    this.#source = source
    this.#options = options
    this.#known = known
  }

  /**
   * Loads the tables the warehouse snapshotted for the slot. A slot whose snapshot predates `cdc_tables` has none
   * listed: the tables published now are taken as snapshotted (`reason = 'seeded'`).
   */
  static async open(source: Connection, writer: pg.ClientBase, options: PublicationWatchOptions): Promise<PublicationWatch> {
    let known = await capturedTables(writer, options.schema, options.slot)
    if (known.size === 0) {
      const published = await source.withClient((client) => publishedTableKeys(client, options.publication))
      for (const key of published) {
        const [schema, table] = JSON.parse(key) as [string, string]
        await recordCapturedTable(writer, options.schema, options.slot, { schema, table }, { lsn: null, rows: null, reason: 'seeded' })
      }
      known = published
    }
    return new PublicationWatch(source, options, known)
  }

  /**
   * The tables among `seen` (a batch's tables) and, when it is time to look, the publication's, that were not
   * snapshotted yet. With `newTables: 'error'` a new one is a `PublicationChangedError`.
   */
  async newTables(seen: Iterable<{ readonly schema: string; readonly table: string }>, force = false): Promise<Set<string>> {
    const found = new Set<string>()
    for (const table of seen) if (!this.#known.has(tableKey(table))) found.add(tableKey(table))
    if (force || Date.now() - this.#checkedAt >= (this.#options.checkEveryMs ?? 30_000)) {
      this.#checkedAt = Date.now()
      const published = await this.#source.withClient((client) => publishedTableKeys(client, this.#options.publication))
      for (const key of published) if (!this.#known.has(key)) found.add(key)
    }
    if (found.size && this.#options.newTables === 'error') {
      const names = [...found].map((key) => (JSON.parse(key) as string[]).join('.'))
      throw new PublicationChangedError(
        `${names.join(', ')} joined publication "${this.#options.publication}" after the capture's snapshot; their older rows are not in bronze. ` +
          `Capture with newTables: 'snapshot' to copy them, or re-snapshot`,
        { step: 'source', context: { slot: this.#options.slot, publication: this.#options.publication, table: names[0] } },
      )
    }
    return found
  }

  /**
   * Copies the tables into bronze inside `writer`'s transaction, as one source snapshot; `committed()` makes them
   * known once that transaction commits.
   */
  async snapshot(writer: pg.ClientBase, keys: ReadonlySet<string>, reason: 'added to publication' | 'column added' = 'added to publication'): Promise<{ committed(): void }> {
    const { schema, slot, publication, logger, signal } = this.#options
    const reader = await this.#source.acquire(signal)
    let broken: Error | undefined
    try {
      await reader.query('begin isolation level repeatable read read only')
      // Read in the snapshot: every commit it sees ends before this position.
      const lsn = (await reader.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')).rows[0]?.lsn as string
      for (const table of await publishedTables(reader, publication, keys)) {
        const rows = await copyPublishedTable(reader, writer, schema, table, { source: redact(this.#source.label), lsn }, signal)
        await recordCapturedTable(writer, schema, slot, table.relation, { lsn, rows, reason })
        logger.info({ slot, publication, schema: table.relation.schema, table: table.relation.table, rows, lsn, reason }, 'table copied into bronze')
      }
      await reader.query('commit')
    } catch (error) {
      broken = error as Error
      throw error
    } finally {
      reader.release(broken)
    }
    return { committed: () => keys.forEach((key) => this.#known.add(key)) }
  }
}
