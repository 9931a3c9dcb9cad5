import type { Lsn, PgOutputMessage, TupleValue } from './pgoutput.js'

type Relation = Extract<PgOutputMessage, { tag: 'relation' }>

/**
 * One row change, as pgoutput sent it: tuples stay the server's text until a consumer reads them, so a change costs
 * little until it is encoded once for its sink.
 */
export type RawChange =
  | {
      readonly kind: 'row'
      /** Where the change's WAL record starts. */
      readonly lsn: bigint
      readonly operation: 'insert' | 'update' | 'delete'
      /** The relation as it was when the change was sent (a later Relation message does not change it). */
      readonly relation: Relation
      readonly newTuple: readonly TupleValue[] | undefined
      /** The old key ('K', a key change) or the whole old row ('O', REPLICA IDENTITY FULL). */
      readonly oldTuple: readonly TupleValue[] | undefined
      readonly subXid: number | undefined
    }
  | {
      readonly kind: 'truncate'
      readonly lsn: bigint
      readonly relations: readonly (Relation | undefined)[]
      readonly cascade: boolean
      readonly restartIdentity: boolean
      readonly subXid: number | undefined
    }
  | { readonly kind: 'message'; readonly lsn: bigint; readonly prefix: string; readonly content: Buffer; readonly subXid: number | undefined }

/** A committed transaction: its changes in commit order. */
export interface CommittedTransaction {
  readonly xid: number
  /** The commit record's LSN (the change log's `commit_lsn`). */
  readonly commitLsn: Lsn
  /** The end of the commit record: the position a consumer acknowledges once it holds the transaction. */
  readonly endLsn: Lsn
  /** Microseconds since 2000-01-01 UTC. */
  readonly commitTime: bigint
  readonly changes: readonly RawChange[]
  /** Change log rows: one per change, and one per table for a truncate. */
  readonly changeCount: number
  /** Arrived in parts before its commit (`streaming`): its changes were buffered by xid. */
  readonly streamed: boolean
}

/**
 * Assembles pgoutput messages into committed transactions, in commit order.
 * - Begin ... Commit: a transaction sent whole at its commit.
 * - Stream Start ... Stream Stop blocks (`streaming 'on'`): parts of in-progress transactions, buffered by their
 *   top-level xid; Stream Commit delivers one, Stream Abort drops it, or only the aborted subtransaction's changes
 *   (the changes carry their subtransaction's xid)
 *   (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
 * Relation messages are kept as they come, so each change is read with the columns it was sent with.
 */
export class TransactionAssembler {
  readonly #relations = new Map<number, Relation>()
  readonly #streams = new Map<number, RawChange[]>()
  #current: { readonly xid: number; readonly changes: RawChange[] } | undefined
  #streamXid: number | undefined

  /** Buffered changes of in-progress streamed transactions (a measure of memory held). */
  get bufferedChanges(): number {
    let count = 0
    for (const changes of this.#streams.values()) count += changes.length
    return count
  }

  /** Feeds one message (and where its WAL record starts); returns the transaction it completes, if any. */
  push(message: PgOutputMessage, lsn: bigint): CommittedTransaction | undefined {
    switch (message.tag) {
      case 'relation':
        this.#relations.set(message.relationOid, message)
        return undefined
      case 'begin':
        this.#current = { xid: message.xid, changes: [] }
        return undefined
      case 'commit': {
        const current = this.#current
        this.#current = undefined
        if (!current) throw new SyntaxError('pgoutput: Commit without Begin')
        return committed(current.xid, message, current.changes, false)
      }
      case 'stream-start':
        this.#streamXid = message.xid
        if (!this.#streams.has(message.xid)) this.#streams.set(message.xid, [])
        return undefined
      case 'stream-stop':
        this.#streamXid = undefined
        return undefined
      case 'stream-commit': {
        const changes = this.#streams.get(message.xid) ?? []
        this.#streams.delete(message.xid)
        return committed(message.xid, message, changes, true)
      }
      case 'stream-abort': {
        if (message.subXid === message.xid) this.#streams.delete(message.xid)
        else {
          const changes = this.#streams.get(message.xid)
          if (changes) this.#streams.set(message.xid, changes.filter((change) => change.subXid !== message.subXid))
        }
        return undefined
      }
      case 'insert':
      case 'update':
      case 'delete': {
        const relation = this.#relations.get(message.relationOid)
        if (!relation) throw new SyntaxError(`pgoutput: a ${message.tag} of relation ${message.relationOid} before its Relation message`)
        this.#add({
          kind: 'row',
          lsn,
          operation: message.tag,
          relation,
          newTuple: message.tag === 'delete' ? undefined : message.newTuple,
          oldTuple: message.tag === 'insert' ? undefined : message.oldTuple,
          subXid: message.xid,
        })
        return undefined
      }
      case 'truncate':
        this.#add({
          kind: 'truncate',
          lsn,
          relations: message.relationOids.map((oid) => this.#relations.get(oid)),
          cascade: message.cascade,
          restartIdentity: message.restartIdentity,
          subXid: message.xid,
        })
        return undefined
      case 'message':
        // A non-transactional message belongs to no transaction and is not kept.
        if (message.transactional) this.#add({ kind: 'message', lsn, prefix: message.prefix, content: message.content, subXid: message.xid })
        return undefined
      default:
        return undefined
    }
  }

  #add(change: RawChange): void {
    const target = this.#streamXid !== undefined ? this.#streams.get(this.#streamXid) : this.#current?.changes
    if (!target) throw new SyntaxError('pgoutput: a change outside any transaction')
    target.push(change)
  }
}

function committed(
  xid: number,
  commit: { readonly commitLsn: Lsn; readonly endLsn: Lsn; readonly commitTime: bigint },
  changes: readonly RawChange[],
  streamed: boolean,
): CommittedTransaction {
  let changeCount = 0
  for (const change of changes) changeCount += change.kind === 'truncate' ? change.relations.length : 1
  return { xid, commitLsn: commit.commitLsn, endLsn: commit.endLsn, commitTime: commit.commitTime, changes, changeCount, streamed }
}
