import { describe, expect, it } from 'vitest'
import { ChangeLogLines } from '../src/cdc/change-log-lines.js'
import { CHANGE_LOG_COLUMNS } from '../src/cdc/change-log.js'
import { changeRecords, lsnFromBigInt, timestampText, TransactionAssembler, UNCHANGED, type CommittedTransaction, type PgOutputMessage } from '../src/cdc.js'
import { rowEncoder } from '../src/pg/copy-text-encoder.js'

type Relation = Extract<PgOutputMessage, { tag: 'relation' }>

const relation = (oid: number, table: string, columns: [string, number, boolean][]): Relation => ({
  tag: 'relation',
  xid: undefined,
  relationOid: oid,
  schema: 'Sales\tDept',
  table,
  replicaIdentity: 'd',
  columns: columns.map(([name, typeOid, isKey]) => ({ name, typeOid, typeModifier: -1, isKey })),
})

const everyType = relation(16400, 'every "type"', [
  ['id', 20, true],
  ['flag', 16, false],
  ['small', 21, false],
  ['n', 1700, false],
  ['f8', 701, false],
  ['f4', 700, false],
  ['name', 25, false],
  ['bytes', 17, false],
  ['ints', 1007, false],
  ['texts', 1009, false],
  ['doc', 3802, false],
  ['at', 1184, false],
  ['mood', 16500, false],
])
const keyless = relation(16401, 'log', [['line', 25, false]])

const begin = (xid: number): PgOutputMessage => ({ tag: 'begin', finalLsn: lsnFromBigInt(0x100n), commitTime: 0n, xid })
const commit = (end: bigint, time = 751_234_567_891_234n): PgOutputMessage => ({
  tag: 'commit',
  flags: 0,
  commitLsn: lsnFromBigInt(end - 8n),
  endLsn: lsnFromBigInt(end),
  commitTime: time,
})

describe('the change log encoding', () => {
  it('writes exactly what encoding the change records would: every type, escapes, unchanged TOAST, keys, truncate and messages', () => {
    const assembler = new TransactionAssembler()
    const feed = (message: PgOutputMessage, lsn = 0x1_0000_00a0n) => assembler.push(message, lsn)
    feed(everyType)
    feed(keyless)
    feed(begin(7))
    const row = [
      '9223372036854775807',
      't',
      '-32768',
      '-12345678901234567890.000000001',
      'NaN',
      '-Infinity',
      'tab\there\nnew "q" \\ é',
      '\\x00ff',
      '{1,NULL,-3}',
      '{"a b",NULL,"c\\\\d"}',
      '{"k": [1, 2.50]}',
      '2024-02-29 23:59:59.999999+00',
      'happy',
    ]
    feed({ tag: 'insert', xid: undefined, relationOid: 16400, newTuple: row })
    feed({
      tag: 'update',
      xid: undefined,
      relationOid: 16400,
      oldKind: undefined,
      oldTuple: undefined,
      newTuple: row.map((value, index) => (index === 6 || index === 10 ? UNCHANGED : value)),
    })
    feed({
      tag: 'update',
      xid: undefined,
      relationOid: 16400,
      oldKind: 'K',
      oldTuple: ['5', null, null, null, null, null, null, null, null, null, null, null, null],
      newTuple: row.map((value, index) => (index === 0 ? '6' : index === 3 ? null : value)),
    })
    feed({
      tag: 'delete',
      xid: undefined,
      relationOid: 16400,
      oldKind: 'K',
      oldTuple: ['6', null, null, null, null, null, null, null, null, null, null, null, null],
    })
    feed({ tag: 'insert', xid: undefined, relationOid: 16401, newTuple: ['no key \\N'] })
    feed({ tag: 'truncate', xid: undefined, cascade: true, restartIdentity: false, relationOids: [16400, 16401, 99999] })
    feed({ tag: 'message', xid: undefined, transactional: true, lsn: lsnFromBigInt(0n), prefix: 'audit\t1', content: Buffer.from('ünïcode\n') })
    feed({ tag: 'message', xid: undefined, transactional: false, lsn: lsnFromBigInt(0n), prefix: 'not kept', content: Buffer.alloc(0) })
    const transaction = feed(commit(0x2_0000_0010n)) as CommittedTransaction
    expect(transaction.changeCount).toBe(9)

    const lines = new ChangeLogLines().encode([transaction])
    const viaRecords = rowEncoder(CHANGE_LOG_COLUMNS.slice(0, -1))(changeRecords([transaction]) as unknown as Record<string, unknown>[])
    expect(lines).toBe(viaRecords)
    expect(lines.split('\n')).toHaveLength(10)
    // Spot checks of the shared encoding: exact int8, numeric as a string, NaN as a string, TOAST left out.
    const [insert, update] = changeRecords([transaction])
    expect(insert?.key).toEqual({ id: 9223372036854775807n })
    expect(insert?.data).toMatchObject({ n: '-12345678901234567890.000000001', f8: Number.NaN, flag: true, ints: [1, null, -3] })
    expect(update?.unchanged_columns).toEqual(['name', 'doc'])
    expect(update?.data).not.toHaveProperty('name')
  })

  it('prints commit times with microseconds, before and after 2000 and far from 1970', () => {
    expect(timestampText(0n)).toBe('2000-01-01T00:00:00.000000Z')
    expect(timestampText(1n)).toBe('2000-01-01T00:00:00.000001Z')
    expect(timestampText(-1n)).toBe('1999-12-31T23:59:59.999999Z')
    expect(timestampText(-946_684_800_000_001n)).toBe('1969-12-31T23:59:59.999999Z')
    expect(timestampText(751_234_567_891_234n)).toBe('2023-10-21T20:16:07.891234Z')
    // Beyond a double's exact range (year 2400), on the exact path.
    expect(timestampText(12_622_780_800_000_001n)).toBe('2400-01-01T00:00:00.000001Z')
  })
})

describe('assembling transactions', () => {
  const streamed = (xid: number, first: boolean): PgOutputMessage => ({ tag: 'stream-start', xid, firstSegment: first })
  const stop: PgOutputMessage = { tag: 'stream-stop' }
  const insert = (xid: number | undefined, text: string): PgOutputMessage => ({ tag: 'insert', xid, relationOid: 16401, newTuple: [text] })
  const streamCommit = (xid: number, end: bigint): PgOutputMessage => ({
    tag: 'stream-commit',
    xid,
    flags: 0,
    commitLsn: lsnFromBigInt(end - 8n),
    endLsn: lsnFromBigInt(end),
    commitTime: 0n,
  })
  const lines = (transaction: CommittedTransaction | undefined) =>
    transaction?.changes.map((change) => (change.kind === 'row' ? change.newTuple?.[0] : change.kind))

  it('buffers streamed parts by transaction, drops aborted subtransactions and aborted transactions, and delivers at commit', () => {
    const assembler = new TransactionAssembler()
    assembler.push(keyless, 0n)
    // Two transactions streamed in interleaved blocks; 700 is a subtransaction of 70.
    for (const message of [streamed(70, true), insert(70, 'a1'), insert(700, 'a-sub'), stop, streamed(80, true), insert(80, 'b1'), stop]) {
      expect(assembler.push(message, 1n)).toBeUndefined()
    }
    // A small transaction commits in between, whole.
    for (const message of [begin(90), insert(undefined, 'c1')]) assembler.push(message, 1n)
    expect(lines(assembler.push(commit(0x50n), 1n))).toEqual(['c1'])
    for (const message of [streamed(70, false), insert(70, 'a2'), stop]) assembler.push(message, 1n)
    expect(assembler.bufferedChanges).toBe(4)
    // ROLLBACK TO SAVEPOINT in 70, then 80 aborts as a whole.
    expect(assembler.push({ tag: 'stream-abort', xid: 70, subXid: 700 }, 1n)).toBeUndefined()
    expect(assembler.push({ tag: 'stream-abort', xid: 80, subXid: 80 }, 1n)).toBeUndefined()
    const done = assembler.push(streamCommit(70, 0x90n), 1n)
    expect(lines(done)).toEqual(['a1', 'a2'])
    expect(done).toMatchObject({ xid: 70, streamed: true, changeCount: 2 })
    expect(done?.endLsn.text).toBe('0/90')
    expect(assembler.bufferedChanges).toBe(0)
  })

  it('says what is wrong with a stream it cannot follow', () => {
    const assembler = new TransactionAssembler()
    expect(() => assembler.push(insert(undefined, 'x'), 0n)).toThrow(/before its Relation message/)
    assembler.push(keyless, 0n)
    expect(() => assembler.push(insert(undefined, 'x'), 0n)).toThrow(/outside any transaction/)
    expect(() => assembler.push(commit(0x10n), 0n)).toThrow(/Commit without Begin/)
  })
})
