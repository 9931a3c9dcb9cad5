import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { redact } from '../connection/redact.js'
import { PublicationChangedError, SerializationFailureError } from '../errors.js'
import type { Logger } from '../logger.js'
import { capturedTables, recordCapturedTable } from './captured-tables.js'
import type { PgOutputMessage } from './pgoutput.js'
import { copyPublishedTable, publishedTableKeys, publishedTables, rewrittenSinceSnapshot, tableKey } from './table-snapshot.js'

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
  /** The tables copied, with the signature each was copied with (null: recorded before signatures were). */
  readonly #known: Map<string, string | null>
  /** Relation messages already looked at: a new one (a schema change, or a new session) has the publication looked at. */
  readonly #relations = new WeakSet<object>()
  #checkedAt = Date.now()

  private constructor(source: Connection, options: PublicationWatchOptions, known: Map<string, string | null>) {
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
      for (const [key, signature] of published) {
        const [schema, table] = JSON.parse(key) as [string, string]
        await recordCapturedTable(writer, options.schema, options.slot, { schema, table }, { lsn: null, rows: null, reason: 'seeded', signature })
      }
      known = published
    }
    return new PublicationWatch(source, options, known)
  }

  /**
   * The tables bronze's copy of is not complete: among `seen` (the relations a batch changes) those not copied yet,
   * and, when it is time to look (a Relation message not seen before, `force`, or every `checkEveryMs`), the
   * publication's tables that are new or whose signature changed (dropped and made again, a column dropped and added
   * again or added, a column list or row filter changed: rows no change carries may differ). With
   * `newTables: 'error'` any of them is a `PublicationChangedError`.
   */
  async newTables(seen: Iterable<Extract<PgOutputMessage, { tag: 'relation' }>>, force = false): Promise<Set<string>> {
    const found = new Set<string>()
    let look = force || Date.now() - this.#checkedAt >= (this.#options.checkEveryMs ?? 30_000)
    for (const relation of seen) {
      if (!this.#known.has(tableKey(relation))) found.add(tableKey(relation))
      if (!this.#relations.has(relation)) {
        this.#relations.add(relation)
        look = true
      }
    }
    if (look) {
      this.#checkedAt = Date.now()
      const published = await this.#source.withClient((client) => publishedTableKeys(client, this.#options.publication))
      for (const [key, signature] of published) {
        const copied = this.#known.get(key)
        if (copied === undefined || (copied !== null && copied !== signature)) found.add(key)
      }
    }
    if (found.size && this.#options.newTables === 'error') {
      const names = [...found].map((key) => (JSON.parse(key) as string[]).join('.'))
      throw new PublicationChangedError(
        `${names.join(', ')} joined publication "${this.#options.publication}" or changed (columns, row filter, or made again) after the capture's snapshot; rows no change carries are not in bronze. ` +
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
  async snapshot(writer: pg.ClientBase, keys: ReadonlySet<string>): Promise<{ committed(): void }> {
    const { schema, slot, publication, logger, signal } = this.#options
    const reader = await this.#source.acquire(signal)
    let broken: Error | undefined
    const copied = new Map<string, string>()
    try {
      for (let attempt = 1; ; attempt++) {
        await reader.query('begin isolation level repeatable read read only')
        // Read in the snapshot: every commit it sees ends before this position.
        const lsn = (await reader.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')).rows[0]?.lsn as string
        const tables = await publishedTables(reader, publication, keys)
        const rewritten = await rewrittenSinceSnapshot(reader, tables)
        if (rewritten.length) {
          // The rewrite committed before the locks: a new snapshot sees its rows.
          await reader.query('rollback')
          if (attempt < 5) continue
          throw new SerializationFailureError(`${rewritten.join(', ')} kept being rewritten while copied into bronze; run the capture again`, {
            step: 'source',
            context: { slot, publication, table: rewritten[0] },
          })
        }
        for (const table of tables) {
          const key = tableKey(table.relation)
          const reason = this.#known.has(key) ? 'table changed' : 'added to publication'
          const rows = await copyPublishedTable(reader, writer, schema, table, { source: redact(this.#source.label), lsn }, signal)
          await recordCapturedTable(writer, schema, slot, table.relation, { lsn, rows, reason, signature: table.signature })
          copied.set(key, table.signature)
          logger.info({ slot, publication, schema: table.relation.schema, table: table.relation.table, rows, lsn, reason }, 'table copied into bronze')
        }
        await reader.query('commit')
        break
      }
    } catch (error) {
      broken = error as Error
      throw error
    } finally {
      reader.release(broken)
    }
    // A table no longer published is left as it is, and not looked at again.
    return { committed: () => keys.forEach((key) => this.#known.set(key, copied.get(key) ?? this.#known.get(key) ?? null)) }
  }
}
