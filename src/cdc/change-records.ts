import { lsnText, timestampText, UNCHANGED, type PgOutputMessage, type TupleValue } from './pgoutput.js'
import type { CommittedTransaction } from './transactions.js'
import { tupleReader } from './tuple.js'

type Relation = Extract<PgOutputMessage, { tag: 'relation' }>

/** One change as the change log stores it, with values read through the lossless type map. */
export interface ChangeRecord {
  readonly lsn: string
  readonly commit_lsn: string
  readonly commit_time: string
  readonly xid: number
  /** Position of the change within its transaction (a truncate of several tables is several changes). */
  readonly seq: number
  readonly operation: 'insert' | 'update' | 'delete' | 'truncate' | 'message'
  readonly schema_name: string | null
  readonly table_name: string | null
  /** The replica identity columns: from the old key or old row when sent, else from the new row. */
  readonly key: Record<string, unknown> | null
  /** The new row, without the columns in `unchanged_columns`. */
  readonly data: Record<string, unknown> | null
  /** The old key (a key change) or the whole old row (REPLICA IDENTITY FULL), when sent. */
  readonly old_data: Record<string, unknown> | null
  /** Columns an update left unchanged and pgoutput did not send (TOAST): their stored value stands. */
  readonly unchanged_columns: readonly string[]
}

const readers = new WeakMap<Relation, (tuple: readonly TupleValue[]) => Record<string, unknown>>()

function read(relation: Relation, tuple: readonly TupleValue[]): Record<string, unknown> {
  let reader = readers.get(relation)
  if (!reader) readers.set(relation, (reader = tupleReader(relation)))
  return reader(tuple)
}

function sent(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).filter(([, value]) => value !== UNCHANGED))
}

/** The changes of committed transactions as records, in commit order. */
export function changeRecords(transactions: readonly CommittedTransaction[]): ChangeRecord[] {
  const records: ChangeRecord[] = []
  for (const transaction of transactions) {
    const shared = { commit_lsn: transaction.commitLsn.text, commit_time: timestampText(transaction.commitTime), xid: transaction.xid }
    let seq = transaction.firstSeq ?? 0
    for (const change of transaction.changes) {
      const lsn = lsnText(change.lsn)
      if (change.kind === 'truncate') {
        for (const relation of change.relations) {
          records.push({
            lsn,
            ...shared,
            seq: seq++,
            operation: 'truncate',
            schema_name: relation?.schema ?? null,
            table_name: relation?.table ?? null,
            key: null,
            data: { cascade: change.cascade, restart_identity: change.restartIdentity },
            old_data: null,
            unchanged_columns: [],
          })
        }
      } else if (change.kind === 'message') {
        records.push({
          lsn,
          ...shared,
          seq: seq++,
          operation: 'message',
          schema_name: null,
          table_name: null,
          key: null,
          data: { prefix: change.prefix, content: change.content.toString('utf8') },
          old_data: null,
          unchanged_columns: [],
        })
      } else {
        const newRow = change.newTuple ? read(change.relation, change.newTuple) : undefined
        const oldRow = change.oldTuple ? read(change.relation, change.oldTuple) : undefined
        const keySource = oldRow ?? newRow ?? {}
        const keyNames = change.relation.columns.filter((column) => column.isKey).map((column) => column.name)
        records.push({
          lsn,
          ...shared,
          seq: seq++,
          operation: change.operation,
          schema_name: change.relation.schema,
          table_name: change.relation.table,
          key: keyNames.length
            ? sent(Object.fromEntries(keyNames.map((name) => [name, keySource[name] === UNCHANGED ? newRow?.[name] : keySource[name]])))
            : null,
          data: newRow ? sent(newRow) : null,
          old_data: oldRow ? sent(oldRow) : null,
          unchanged_columns: newRow ? Object.keys(newRow).filter((name) => newRow[name] === UNCHANGED) : [],
        })
      }
    }
  }
  return records
}
