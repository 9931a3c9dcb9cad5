import type pg from 'pg'
import type { Connection } from '../connection/connection.js'
import { redact } from '../connection/redact.js'
import { primaryKeyOf } from '../pg/catalog.js'
import type { Column } from '../pg/types.js'
import { applyTransactions } from './apply.js'
import { bronzeColumns, columnsNewToBronze, existingValues, prepareBronzeTable, type BronzeRelation, type ExistingValues } from './bronze-table.js'
import type { PgOutputMessage } from './pgoutput.js'
import { tableKey } from './table-snapshot.js'
import { PART_CHANGES, transactionParts, type CommittedTransaction } from './transactions.js'

type Relation = Extract<PgOutputMessage, { tag: 'relation' }>

/** Applies a batch's transactions to the bronze tables inside the caller's transaction; `relations`: those they change. */
export type BronzeApplier = (client: pg.ClientBase, transactions: readonly CommittedTransaction[], relations: readonly Relation[]) => Promise<void>

/**
 * Applies batches to the bronze tables, with each relation as the batch's changes were sent. REPLICA IDENTITY FULL
 * tables are keyed by their primary key, asked of the source once per table. Each Relation message (a table's columns
 * as its changes were sent) is typed on the source and its bronze table made ready once (`prepareBronzeTable`): a new
 * one after ALTER TABLE adds or widens columns in the transaction of the changes that need them. Columns added with
 * a default whose existing values no change carries go to `unknownValues` (they keep NULL in bronze). Transactions are applied a part at a time,
 * so one that waits on disk is never read whole into memory. The rows written carry the lineage columns, with the
 * source's label (`LINEAGE_COLUMNS`).
 */
export function bronzeApplier(
  source: Connection,
  schema: string,
  unknownValues: (relation: BronzeRelation, columns: readonly string[]) => void,
): BronzeApplier {
  const primaryKeys = new Map<number, Promise<readonly string[]>>()
  const primaryKey = (oid: number) => {
    let key = primaryKeys.get(oid)
    if (!key) primaryKeys.set(oid, (key = source.withClient((client) => primaryKeyOf(client, oid))))
    return key
  }
  const columns = new WeakMap<Relation, Promise<[Column[], ExistingValues]>>()
  const prepared = new WeakSet<Relation>()
  const lineage = Object.freeze({ source: redact(source.label) })
  return async (client, transactions, sent) => {
    const relations = new Map<string, BronzeRelation>()
    for (const relation of sent) {
      const keyed = relation.replicaIdentity === 'f' ? { ...relation, primaryKey: await primaryKey(relation.relationOid) } : relation
      if (!prepared.has(relation)) {
        let typed = columns.get(relation)
        if (!typed) {
          const read = (reader: pg.ClientBase) => Promise.all([bronzeColumns(reader, relation), existingValues(reader, relation)])
          columns.set(relation, (typed = source.withClient(read)))
        }
        const [types, existing] = await typed
        // Asked of bronze only when the source has such columns: rarely, and once per Relation message.
        const added = existing.unknown.size ? await columnsNewToBronze(client, schema, keyed, types) : []
        const unknown = added.filter((name) => existing.unknown.has(name))
        // Existing rows got values no change carries: only a copy of the table brings them.
        if (unknown.length) unknownValues(keyed, unknown)
        await prepareBronzeTable(client, schema, keyed, types, existing.missing)
        // A failed write ends the capture, so a table prepared in a transaction that rolled back is not used again.
        prepared.add(relation)
      }
      relations.set(tableKey(relation), keyed)
    }
    // Parts of large transactions, and small transactions together, about PART_CHANGES changes per apply: runs span
    // transactions (one statement for many one-row transactions) and a part's arrays never outgrow it.
    let group: CommittedTransaction[] = []
    let changes = 0
    for (const part of transactionParts(transactions, PART_CHANGES)) {
      group.push(part)
      changes += part.changeCount
      if (changes < PART_CHANGES) continue
      await applyTransactions(client, schema, relations, group, lineage)
      group = []
      changes = 0
    }
    if (group.length) await applyTransactions(client, schema, relations, group, lineage)
  }
}
