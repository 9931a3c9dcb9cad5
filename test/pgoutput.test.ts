import { describe, expect, it, vi } from 'vitest'
import { connect, MissingPublicationError, ReplicaIdentityError, SlotInvalidatedError, WalLevelError } from '../src/index.js'
import {
  checkCdcReady,
  dropSlot,
  ensurePublication,
  ensureSlot,
  lsnFromBigInt,
  lsnFromText,
  PgOutputDecoder,
  slotStatus,
  timestampText,
  tupleReader,
  UNCHANGED,
  type PgOutputMessage,
} from '../src/cdc.js'
import { startThrowawayCluster } from '../src/testing/index.js'
import { clientFor } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('cdc')

/** Reads (and consumes) the slot's changes as pgoutput bytes, decoded in order. */
async function changes(slot: string, publication: string, options: string[] = []): Promise<PgOutputMessage[]> {
  // Decoding reads only flushed WAL, and the test cluster commits asynchronously (the WAL writer flushes every
  // 200 ms): wait until everything written so far is flushed.
  const [target] = await db.sourceSql('select pg_current_wal_insert_lsn()::text as lsn')
  for (let attempt = 0; attempt < 100; attempt++) {
    const [flushed] = await db.sourceSql('select pg_current_wal_flush_lsn() >= $1::pg_lsn as done', [target?.lsn])
    if (flushed?.done) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const client = await clientFor(db.sourceUrl)
  let rows: { data: Buffer }[]
  try {
    // A small decoding memory makes a large transaction stream in parts (when streaming is on).
    await client.query(`set logical_decoding_work_mem = '64kB'`)
    const result = await client.query<{ data: Buffer }>(
      `select data from pg_logical_slot_get_binary_changes($1, null, null, 'proto_version', '2', 'publication_names', $2, 'messages', 'true'${options.map((_, index) => `, $${index + 3}`).join('')})`,
      [slot, publication, ...options],
    )
    rows = result.rows
  } finally {
    await client.end()
  }
  const decoder = new PgOutputDecoder()
  return rows.map((row) => decoder.decode(row.data))
}

describe('pgoutput values', () => {
  it('prints LSNs and timestamps as PostgreSQL does, on the fast double path and beyond it', () => {
    // The reference: bigint arithmetic for every digit.
    const lsnReference = (value: bigint) => `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`
    for (const value of [0n, 1n, 0xffffffffn, 0x1_0000_0000n, 0x16_b374d848n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n]) {
      expect(lsnFromBigInt(value).text).toBe(lsnReference(value))
    }
    const micros = (iso: string, extra: bigint) => BigInt(Date.parse(iso)) * 1000n + extra - 946_684_800_000_000n
    expect(timestampText(micros('2024-02-29T23:59:59.999Z', 999n))).toBe('2024-02-29T23:59:59.999999Z')
    expect(timestampText(micros('2024-03-01T00:00:00.000Z', 0n))).toBe('2024-03-01T00:00:00.000000Z')
    expect(timestampText(micros('2024-03-01T00:00:00.000Z', 1n))).toBe('2024-03-01T00:00:00.000001Z')
    expect(timestampText(micros('1969-12-31T23:59:59.999Z', 999n))).toBe('1969-12-31T23:59:59.999999Z')
    expect(timestampText(micros('1900-01-01T00:00:00.000Z', 5n))).toBe('1900-01-01T00:00:00.000005Z')
    expect(timestampText(0n)).toBe('2000-01-01T00:00:00.000000Z')
    expect(timestampText(-1n)).toBe('1999-12-31T23:59:59.999999Z')
  })

  it('reads 64-bit values on both sides of 2^53 exactly (commit time and LSNs of a Commit message)', () => {
    for (const [lsn, time] of [
      [0x16_b374d848n, 751_234_567_891_234n],
      [2n ** 60n + 12345n, -(2n ** 62n) + 7n],
      [2n ** 53n + 1n, -1n],
    ] as const) {
      const message = Buffer.alloc(26)
      message[0] = 0x43 // 'C'
      message.writeBigUInt64BE(lsn, 2)
      message.writeBigUInt64BE(lsn + 8n, 10)
      message.writeBigInt64BE(time, 18)
      const commit = new PgOutputDecoder().decode(message)
      expect(commit).toMatchObject({ tag: 'commit', commitTime: time })
      expect(commit.tag === 'commit' && [commit.commitLsn.value, commit.endLsn.value]).toEqual([lsn, lsn + 8n])
    }
  })
})

describe('pgoutput decoding of real changes', () => {
  it('reads a tuple whose columns are named __proto__, constructor and toString as columns like any other', () => {
    const names = ['__proto__', 'constructor', 'toString']
    const relation = {
      tag: 'relation',
      xid: undefined,
      relationOid: 1,
      schema: 'public',
      table: 'odd',
      replicaIdentity: 'd',
      columns: names.map((name) => ({ name, typeOid: 25, typeModifier: -1, isKey: false })),
    } as const
    const row = tupleReader(relation)(['p', null, 's'])
    expect(Object.keys(row)).toEqual(names)
    expect(Object.getOwnPropertyDescriptor(row, '__proto__')?.value).toBe('p')
    expect(row.constructor).toBeNull()
    const column: string = 'toString' // a column's name, not Object's method
    expect(row[column]).toBe('s')
  })

  it('decodes begin, relation, insert, update (key changed and not), delete, truncate, message and commit', async () => {
    await db.sourceSql(`create table items (id int primary key, name text, payload text)`)
    await ensurePublication(db.source, 'pub_items', [{ table: 'items' }])
    await ensureSlot(db.source, 'slot_items')
    await db.sourceSql(`insert into items values (1, 'one', 'x'), (2, 'two', null)`)
    await db.sourceSql(`update items set name = 'uno' where id = 1`)
    await db.sourceSql(`update items set id = 10 where id = 2`)
    await db.sourceSql(`delete from items where id = 10`)
    await db.sourceSql(`select pg_logical_emit_message(true, 'pgdk', 'hello')`)
    await db.sourceSql(`truncate items`)
    const messages = await changes('slot_items', 'pub_items')
    const tags = messages.map((message) => message.tag)
    expect(tags).toEqual([
      ...['begin', 'relation', 'insert', 'insert', 'commit'],
      ...['begin', 'update', 'commit'],
      ...['begin', 'update', 'commit'],
      ...['begin', 'delete', 'commit'],
      ...['begin', 'message', 'commit'],
      // pgoutput sends the relation again before a truncate.
      ...['begin', 'relation', 'truncate', 'commit'],
    ])
    const relation = messages.find((message) => message.tag === 'relation') as Extract<PgOutputMessage, { tag: 'relation' }>
    expect(relation).toMatchObject({ schema: 'public', table: 'items', replicaIdentity: 'd' })
    expect(relation.columns.map((column) => [column.name, column.typeOid, column.typeModifier, column.isKey])).toEqual([
      ['id', 23, -1, true],
      ['name', 25, -1, false],
      ['payload', 25, -1, false],
    ])
    const read = tupleReader(relation)
    const inserts = messages.filter((message) => message.tag === 'insert')
    expect(inserts.map((insert) => read(insert.newTuple))).toEqual([
      { id: 1, name: 'one', payload: 'x' },
      { id: 2, name: 'two', payload: null },
    ])
    const updates = messages.filter((message) => message.tag === 'update')
    expect(updates[0]?.oldKind).toBeUndefined()
    expect(updates[1]).toMatchObject({ oldKind: 'K' })
    expect(read(updates[1]!.oldTuple!)).toEqual({ id: 2, name: null, payload: null })
    expect(read(updates[1]!.newTuple)).toEqual({ id: 10, name: 'two', payload: null })
    const deleted = messages.find((message) => message.tag === 'delete') as Extract<PgOutputMessage, { tag: 'delete' }>
    expect(deleted.oldKind).toBe('K')
    expect(read(deleted.oldTuple).id).toBe(10)
    const message = messages.find((item) => item.tag === 'message') as Extract<PgOutputMessage, { tag: 'message' }>
    expect([message.prefix, message.content.toString(), message.transactional]).toEqual(['pgdk', 'hello', true])
    const truncate = messages.find((item) => item.tag === 'truncate') as Extract<PgOutputMessage, { tag: 'truncate' }>
    expect(truncate.relationOids).toEqual([relation.relationOid])
    // Commit LSNs grow, and commit times are real times.
    const commits = messages.filter((item) => item.tag === 'commit')
    expect(commits.every((commit, index) => index === 0 || commit.commitLsn.value > commits[index - 1]!.commitLsn.value)).toBe(true)
    expect(Math.abs(Date.parse(timestampText(commits[0]!.commitTime)) - Date.now())).toBeLessThan(60_000)
  })

  it('marks a TOASTed value left unchanged by an update as UNCHANGED, never NULL, and sends the full old row with REPLICA IDENTITY FULL', async () => {
    await db.sourceSql(`create table docs (id int primary key, big text, note text)`)
    await db.sourceSql(`alter table docs alter column big set storage external`)
    await ensurePublication(db.source, 'pub_docs', [{ table: 'docs' }])
    await ensureSlot(db.source, 'slot_docs')
    await db.sourceSql(`insert into docs values (1, repeat('x', 100000), 'a')`)
    await db.sourceSql(`update docs set note = 'b' where id = 1`)
    await db.sourceSql(`alter table docs replica identity full`)
    await db.sourceSql(`update docs set note = 'c' where id = 1`)
    const messages = await changes('slot_docs', 'pub_docs')
    const relations = messages.filter((message) => message.tag === 'relation')
    const updates = messages.filter((message) => message.tag === 'update')
    const read = tupleReader(relations[0]!)
    expect(read(updates[0]!.newTuple)).toEqual({ id: 1, big: UNCHANGED, note: 'b' })
    expect(relations.at(-1)?.replicaIdentity).toBe('f')
    expect(updates[1]?.oldKind).toBe('O')
    expect(read(updates[1]!.oldTuple!).note).toBe('b')
  })

  it('decodes a large transaction streamed in parts (stream start, stop and commit)', async () => {
    await db.sourceSql(`create table bulk (id int primary key, pad text)`)
    await ensurePublication(db.source, 'pub_bulk', [{ table: 'bulk' }])
    await ensureSlot(db.source, 'slot_bulk')
    await db.sourceSql(`insert into bulk select g, repeat('p', 200) from generate_series(1, 5000) g`)
    // logical_decoding_work_mem (64kB in changes()) is exceeded: with streaming on, the transaction arrives in parts.
    {
      const messages = await changes('slot_bulk', 'pub_bulk', ['streaming', 'on'])
      const tags = new Set(messages.map((message) => message.tag))
      expect(tags).toEqual(new Set(['stream-start', 'relation', 'insert', 'stream-stop', 'stream-commit']))
      const starts = messages.filter((message) => message.tag === 'stream-start')
      expect(starts.length).toBeGreaterThan(1)
      expect(starts[0]?.firstSegment).toBe(true)
      expect(starts.slice(1).every((start) => !start.firstSegment && start.xid === starts[0]?.xid)).toBe(true)
      const inserts = messages.filter((message) => message.tag === 'insert')
      expect(inserts).toHaveLength(5000)
      expect(inserts.every((insert) => insert.xid === starts[0]?.xid)).toBe(true)
    }
  })
})

describe('slots, publications and prerequisites', () => {
  it('reports slot lag and retained WAL, and drops a slot on request', async () => {
    await ensureSlot(db.source, 'slot_status')
    expect((await ensureSlot(db.source, 'slot_status')).created).toBe(false)
    await db.sourceSql(`create table lagging (id int primary key)`)
    await db.sourceSql(`insert into lagging select generate_series(1, 10000)`)
    // The throwaway cluster commits asynchronously: the WAL writer writes the insert out within a moment.
    const status = await vi.waitFor(
      async () => {
        const current = await slotStatus(db.source, 'slot_status')
        expect(current!.lagBytes).toBeGreaterThan(100_000)
        return current
      },
      { timeout: 10_000, interval: 100 },
    )
    expect(status).toMatchObject({ name: 'slot_status', plugin: 'pgoutput', active: false, walStatus: 'reserved' })
    expect(lsnFromText(status!.confirmedFlushLsn!).value).toBeGreaterThan(0n)
    await dropSlot(db.source, 'slot_status')
    expect(await slotStatus(db.source, 'slot_status')).toBeUndefined()
  })

  it('names a missing publication and tables whose updates would carry no key', async () => {
    await expect(checkCdcReady(db.source, { publication: 'no_such_pub' })).rejects.toBeInstanceOf(MissingPublicationError)
    await db.sourceSql(`create table keyless (a int, b text)`)
    await ensurePublication(db.source, 'pub_keyless', [{ table: 'keyless' }])
    const failure = await checkCdcReady(db.source, { publication: 'pub_keyless' }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(ReplicaIdentityError)
    expect((failure as Error).message).toMatch(/public\.keyless/)
    await db.sourceSql(`alter table keyless replica identity full`)
    await expect(checkCdcReady(db.source, { publication: 'pub_keyless' })).resolves.toBeUndefined()
  })

  it('says clearly when wal_level is not logical', async () => {
    const server = await startThrowawayCluster({ settings: { wal_level: 'replica', max_wal_senders: 10 } })
    const conn = connect(server.url)
    try {
      const failure = await checkCdcReady(conn, { publication: 'any' }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(WalLevelError)
      expect((failure as Error).message).toMatch(/wal_level = replica/)
    } finally {
      await conn.close()
      await server.stop()
    }
  })

  it('says clearly when a slot was invalidated (wal_status = lost)', async () => {
    const server = await startThrowawayCluster({ settings: { max_slot_wal_keep_size: "'1MB'", wal_keep_size: 0 } })
    const conn = connect(server.url)
    try {
      await ensureSlot(conn, 'doomed')
      await conn.query('create table keyed (id int primary key)')
      await ensurePublication(conn, 'pub_doomed', [{ table: 'keyed' }])
      // More WAL than the slot may keep, then a checkpoint: the server drops the slot's WAL and marks it lost.
      for (let segment = 0; segment < 4; segment++) {
        await conn.query(`create table filler_${segment} as select g, repeat('w', 200) as pad from generate_series(1, 20000) g`)
        await conn.query('select pg_switch_wal()')
      }
      await conn.query('checkpoint')
      expect((await slotStatus(conn, 'doomed'))?.walStatus).toBe('lost')
      const failure = await checkCdcReady(conn, { publication: 'pub_doomed', slot: 'doomed' }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(SlotInvalidatedError)
      expect((failure as Error).message).toMatch(/invalidated/)
    } finally {
      await conn.close()
      await server.stop()
    }
  })
})
