import type { Lsn, PgOutputMessage, TupleValue } from './pgoutput.js'
import { SpillFile } from './spill-file.js'

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
  /**
   * Its changes. For a transaction that waits on disk (`spilled`) this reads them all into memory: prefer `chunks()`.
   */
  readonly changes: readonly RawChange[]
  /** Change log rows: one per change, and one per table for a truncate. */
  readonly changeCount: number
  /** Arrived in parts before its commit (`streaming`): its changes were buffered by xid. */
  readonly streamed: boolean
  /** The change log `seq` of its first change: 0, or where a part of a larger transaction starts (`transactionParts`). */
  readonly firstSeq?: number
  /** Its changes wait in a spill file (it outgrew the assembler's memory bounds) rather than in memory. */
  readonly spilled: boolean
  /** Its changes in order, at most `size` at a time (from disk when spilled, a chunk at a time). */
  chunks(size: number): Iterable<readonly RawChange[]>
  /**
   * The relations its changes were sent with (truncates' included), each Relation message once; for a spilled one
   * without reading the file (those of rolled-back savepoints included).
   */
  relations(): readonly Relation[]
  /** Frees its spill file, if it has one; `changes` and `chunks()` are empty after it. */
  release(): void
}

export interface AssemblerOptions {
  /** A transaction's changes go to a spill file once it holds more than this many... (default 20,000) */
  readonly spillAfterChanges?: number
  /** ...or more than this many bytes of pgoutput messages (default 16 MiB). */
  readonly spillAfterBytes?: number
  /** Where spill files go (default the OS temp directory); they are unlinked as soon as they are made. */
  readonly spillDirectory?: string
}

/** A transaction being received: in memory until it outgrows the bounds, then on disk. */
interface Pending {
  readonly xid: number
  changes: RawChange[]
  bytes: number
  spill: SpillFile | undefined
  /** Spilled changes' change log rows by subtransaction, so a rolled-back savepoint's can be taken off the count. */
  readonly counts: Map<number | undefined, number>
  /** Subtransactions rolled back (their spilled changes are skipped when read). */
  readonly dropped: Set<number>
}

/**
 * Assembles pgoutput messages into committed transactions, in commit order.
 * - Begin ... Commit: a transaction sent whole at its commit.
 * - Stream Start ... Stream Stop blocks (`streaming 'on'`): parts of in-progress transactions, buffered by their
 *   top-level xid; Stream Commit delivers one, Stream Abort drops it, or only the aborted subtransaction's changes
 *   (the changes carry their subtransaction's xid)
 *   (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
 * Relation messages are kept as they come, so each change is read with the columns it was sent with.
 * Memory is bounded whatever a transaction's size: one that outgrows `spillAfterChanges` or `spillAfterBytes` moves
 * to a spill file (`SpillFile`), and is read back from it in chunks once it commits.
 */
export class TransactionAssembler {
  readonly #relations = new Map<number, Relation>()
  readonly #streams = new Map<number, Pending>()
  readonly #options: Required<Omit<AssemblerOptions, 'spillDirectory'>> & AssemblerOptions
  #current: Pending | undefined
  #streamXid: number | undefined

  constructor(options: AssemblerOptions = {}) {
    this.#options = { spillAfterChanges: 20_000, spillAfterBytes: 16 << 20, ...options }
  }

  /** Changes of in-progress streamed transactions held in memory (a measure of memory held). */
  get bufferedChanges(): number {
    let count = 0
    for (const pending of this.#streams.values()) count += pending.changes.length
    return count
  }

  /** Whether a transaction is open (Begin seen, Commit not yet): nothing before its commit may be confirmed meanwhile. */
  get inTransaction(): boolean {
    return this.#current !== undefined
  }

  /**
   * Feeds one message (and where its WAL record starts, and its size in bytes for the memory bounds); returns the
   * transaction it completes, if any.
   */
  push(message: PgOutputMessage, lsn: bigint, size = 0): CommittedTransaction | undefined {
    switch (message.tag) {
      case 'relation':
        this.#relations.set(message.relationOid, message)
        return undefined
      case 'begin':
        this.#current = pending(message.xid)
        return undefined
      case 'commit': {
        const current = this.#current
        this.#current = undefined
        if (!current) throw new SyntaxError('pgoutput: Commit without Begin')
        return committed(current, message, false)
      }
      case 'stream-start':
        this.#streamXid = message.xid
        if (!this.#streams.has(message.xid)) this.#streams.set(message.xid, pending(message.xid))
        return undefined
      case 'stream-stop':
        this.#streamXid = undefined
        return undefined
      case 'stream-commit': {
        const streamed = this.#streams.get(message.xid) ?? pending(message.xid)
        this.#streams.delete(message.xid)
        return committed(streamed, message, true)
      }
      case 'stream-abort': {
        const streamed = this.#streams.get(message.xid)
        if (!streamed) return undefined
        if (message.subXid === message.xid) {
          this.#streams.delete(message.xid)
          streamed.spill?.close()
        } else if (streamed.spill) {
          streamed.dropped.add(message.subXid)
          streamed.counts.delete(message.subXid)
        } else {
          streamed.changes = streamed.changes.filter((change) => change.subXid !== message.subXid)
        }
        return undefined
      }
      case 'insert':
      case 'update':
      case 'delete': {
        const relation = this.#relations.get(message.relationOid)
        if (!relation) throw new SyntaxError(`pgoutput: a ${message.tag} of relation ${message.relationOid} before its Relation message`)
        this.#add(
          {
            kind: 'row',
            lsn,
            operation: message.tag,
            relation,
            newTuple: message.tag === 'delete' ? undefined : message.newTuple,
            oldTuple: message.tag === 'insert' ? undefined : message.oldTuple,
            subXid: message.xid,
          },
          size,
        )
        return undefined
      }
      case 'truncate':
        this.#add(
          {
            kind: 'truncate',
            lsn,
            relations: message.relationOids.map((oid) => this.#relations.get(oid)),
            cascade: message.cascade,
            restartIdentity: message.restartIdentity,
            subXid: message.xid,
          },
          size,
        )
        return undefined
      case 'message':
        // A non-transactional message belongs to no transaction and is not kept.
        if (message.transactional) this.#add({ kind: 'message', lsn, prefix: message.prefix, content: message.content, subXid: message.xid }, size)
        return undefined
      default:
        return undefined
    }
  }

  /** Closes the spill files of transactions that will not complete now (the stream stopped). */
  close(): void {
    this.#current?.spill?.close()
    for (const streamed of this.#streams.values()) streamed.spill?.close()
  }

  #add(change: RawChange, size: number): void {
    const target = this.#streamXid !== undefined ? this.#streams.get(this.#streamXid) : this.#current
    if (!target) throw new SyntaxError('pgoutput: a change outside any transaction')
    target.bytes += size
    if (target.spill) {
      target.spill.append(change)
      target.counts.set(change.subXid, (target.counts.get(change.subXid) ?? 0) + rows(change))
      return
    }
    target.changes.push(change)
    if (target.changes.length > this.#options.spillAfterChanges || target.bytes > this.#options.spillAfterBytes) {
      const spill = new SpillFile(this.#options.spillDirectory)
      for (const held of target.changes) {
        spill.append(held)
        target.counts.set(held.subXid, (target.counts.get(held.subXid) ?? 0) + rows(held))
      }
      target.spill = spill
      target.changes = []
    }
  }
}

function pending(xid: number): Pending {
  return { xid, changes: [], bytes: 0, spill: undefined, counts: new Map(), dropped: new Set() }
}

/** A change's rows in the change log: one, or one per table of a truncate. */
function rows(change: RawChange): number {
  return change.kind === 'truncate' ? change.relations.length : 1
}

function committed(
  from: Pending,
  commit: { readonly commitLsn: Lsn; readonly endLsn: Lsn; readonly commitTime: bigint },
  streamed: boolean,
): CommittedTransaction {
  const { spill, dropped } = from
  let changeCount = 0
  if (spill) for (const count of from.counts.values()) changeCount += count
  else for (const change of from.changes) changeCount += rows(change)
  const inMemory = from.changes
  let released = false
  return {
    xid: from.xid,
    commitLsn: commit.commitLsn,
    endLsn: commit.endLsn,
    commitTime: commit.commitTime,
    changeCount,
    streamed,
    spilled: spill !== undefined,
    get changes(): readonly RawChange[] {
      if (!spill) return inMemory
      const all: RawChange[] = []
      if (!released) for (const chunk of spill.chunks(10_000, dropped)) all.push(...chunk)
      return all
    },
    *chunks(size: number): Generator<readonly RawChange[]> {
      if (spill) {
        if (!released) yield* spill.chunks(size, dropped)
        return
      }
      yield* slices(inMemory, size)
    },
    relations: () => (spill ? spill.relations : relationsIn(inMemory)),
    release(): void {
      released = true
      spill?.close()
    },
  }
}

/**
 * Changes per part when a batch is written a part at a time: what the change log's COPY encodes at once (about 1.5 MB
 * of text for rows of 440 bytes) and what one apply statement's arrays hold. Small enough that a part is short-lived
 * garbage, not memory the garbage collector lets accumulate; large enough that a statement's overhead is amortized.
 */
export const PART_CHANGES = 2_000

/**
 * Transactions cut into parts of at most `size` changes, each a transaction of its own with the same xid and commit
 * and the `firstSeq` where it starts, in order. A transaction that fits is passed as it is.
 */
export function* transactionParts(transactions: readonly CommittedTransaction[], size: number): Generator<CommittedTransaction> {
  for (const transaction of transactions) {
    if (!transaction.spilled && transaction.changes.length <= size) {
      yield transaction
      continue
    }
    let seq = transaction.firstSeq ?? 0
    for (const chunk of transaction.chunks(size)) {
      let changeCount = 0
      for (const change of chunk) changeCount += rows(change)
      yield {
        xid: transaction.xid,
        commitLsn: transaction.commitLsn,
        endLsn: transaction.endLsn,
        commitTime: transaction.commitTime,
        changes: chunk,
        changeCount,
        streamed: transaction.streamed,
        firstSeq: seq,
        spilled: false,
        chunks: (partSize: number) => slices(chunk, partSize),
        relations: () => relationsIn(chunk),
        release: () => undefined,
      }
      seq += changeCount
    }
  }
}

/** The relations (as sent) that transactions change, truncates included: each Relation message once, in order. */
export function relationsOf(transactions: readonly CommittedTransaction[]): Relation[] {
  const seen = new Set<Relation>()
  for (const transaction of transactions) for (const relation of transaction.relations()) seen.add(relation)
  return [...seen]
}

function relationsIn(changes: readonly RawChange[]): Relation[] {
  const seen = new Set<Relation>()
  for (const change of changes) {
    if (change.kind === 'row') seen.add(change.relation)
    else if (change.kind === 'truncate') for (const relation of change.relations) if (relation) seen.add(relation)
  }
  return [...seen]
}

/** An in-memory transaction's changes, `size` at a time. */
function* slices(changes: readonly RawChange[], size: number): Generator<readonly RawChange[]> {
  for (let start = 0; start < changes.length; start += size) yield changes.slice(start, start + size)
}
