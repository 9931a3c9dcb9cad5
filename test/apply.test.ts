import { describe, expect, it } from 'vitest'
import { applyChanges, applyTransactions } from '../src/cdc/apply.js'
import type { BronzeRelation } from '../src/cdc/bronze-table.js'
import { tableKey } from '../src/cdc/table-snapshot.js'
import { cdcSource, changeRecords, ensurePublication, ensureSlot, type CommittedTransaction } from '../src/cdc.js'
import { clientFor, tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('apply')

const BRONZE_TABLES = `
  create table %s.br_pairs (a int, b text, v text, primary key (a, b));
  create table %s.br_bag (label text, doc json, n numeric, spot point);
  create table %s.br_keyed_full (id int primary key, note text)`

/** Every committed transaction of the slot up to the one that inserts the end marker into `pairs`. */
async function readAll(slot: string, publication: string): Promise<CommittedTransaction[]> {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), 30_000)
  const source = cdcSource(db.source, { slot, publication, maxBatchMs: 50, signal: controller.signal })
  const transactions: CommittedTransaction[] = []
  try {
    for await (const batch of source) {
      transactions.push(...batch.transactions)
      batch.acknowledge()
      const ended = batch.transactions.some((transaction) =>
        transaction.changes.some((change) => change.kind === 'row' && change.relation.table === 'pairs' && change.newTuple?.[0] === '-1'),
      )
      if (ended) break
    }
  } finally {
    clearTimeout(timer)
    await source.close()
  }
  return transactions
}

/** The relations of the transactions, keyed as capture keys them (a FULL table by its primary key, when it has one). */
function relationsOf(transactions: readonly CommittedTransaction[]): Map<string, BronzeRelation> {
  const relations = new Map<string, BronzeRelation>()
  for (const transaction of transactions) {
    for (const change of transaction.changes) {
      if (change.kind !== 'row') continue
      const { relation } = change
      const primaryKey = relation.table === 'keyed_full' ? ['id'] : relation.replicaIdentity === 'f' ? [] : undefined
      relations.set(tableKey(relation), { ...relation, primaryKey })
    }
  }
  return relations
}

describe('applying changes to bronze tables in batched statements', () => {
  it('lands composite-key deletes, key moves, keyless REPLICA IDENTITY FULL updates and deletes of identical rows, and chains, equal to the source', async () => {
    await db.sourceSql(`create table pairs (a int, b text, v text, primary key (a, b))`)
    await db.sourceSql(`create table bag (label text, doc json, n numeric, spot point)`)
    await db.sourceSql(`alter table bag replica identity full`)
    await db.sourceSql(`create table keyed_full (id int primary key, note text)`)
    await db.sourceSql(`alter table keyed_full replica identity full`)
    await ensurePublication(db.source, 'pub_apply', [{ table: 'pairs' }, { table: 'bag' }, { table: 'keyed_full' }])
    await ensureSlot(db.source, 'slot_apply')
    const client = await clientFor(db.sourceUrl)
    const step = async (...statements: string[]) => {
      await client.query('begin')
      for (const statement of statements) await client.query(statement)
      await client.query('commit')
    }
    try {
      await step(
        `insert into pairs select g / 7, 'b' || (g % 7), 'v' || g from generate_series(1, 3500) g`,
        // Identical rows (three twins, two nulls and two empty strings, which are not the same row), and a spread.
        `insert into bag values ('twin', '{"a": 1}', 1.50, '(1,2)'), ('twin', '{"a": 1}', 1.50, '(1,2)'), ('twin', '{"a": 1}', 1.50, '(1,2)')`,
        `insert into bag values (null, null, null, null), (null, null, null, null), ('', null, null, null), ('', null, null, null)`,
        `insert into bag select 'row ' || (g % 300), json_build_object('g', g % 300), g % 300, point(g % 300, 0) from generate_series(1, 1200) g`,
        `insert into keyed_full select g, 'n' || g from generate_series(1, 50) g`,
        // Values an array literal must quote: a quote, a backslash, the word NULL, an empty string, a NULL.
        `insert into pairs values (9999, 'q"b\\', 'NULL'), (9998, '', null), (9997, '{a,b}', ' "x" ')`,
        `insert into bag values ('q"b\\', '"s"', null, null), ('NULL', null, null, null)`,
      )
      await step(`update bag set n = 5 where label in ('q"b\\', 'NULL')`, `update pairs set v = 'NULL' where a = 9998`, `delete from pairs where a = 9997`)
      // Composite-key deletes in one run (the bench's shape), and a row deleted then inserted again in one transaction.
      await step(`delete from pairs where (a + length(b)) % 3 = 0`, `delete from pairs where a = 10`, `insert into pairs values (10, 'b1', 'back')`)
      // Key moves among updates of the same keys; a key updated several times keeps its last row.
      await step(
        `update pairs set v = 'once' where a between 20 and 40`,
        `update pairs set b = b || 'x' where a = 21`,
        `update pairs set v = 'twice' where a between 20 and 30`,
        `update pairs set a = a + 10000 where a = 22`,
        `update pairs set v = 'after move' where a = 10022`,
      )
      // Exactly one of two (or three) identical rows.
      await step(`delete from bag where ctid = (select ctid from bag where label = 'twin' limit 1)`)
      await step(`update bag set n = 2 where ctid = (select ctid from bag where label = 'twin' limit 1)`)
      await step(`delete from bag where ctid = (select ctid from bag where label is null limit 1)`)
      await step(`update bag set label = 'was empty' where ctid = (select ctid from bag where label = '' limit 1)`)
      // Many rows with equal values, updated and deleted in bulk (each old tuple several times in one run).
      await step(`update bag set n = n + 1000 where label like 'row %' and n::int % 2 = 0`)
      await step(`delete from bag where label like 'row %' and n::int % 5 = 0`)
      // A chain in one transaction: x -> y, then a y (the row just written, or one that was there) -> z, then z deleted.
      await step(`insert into bag values ('x', null, 1, null), ('y', null, 1, null)`)
      await step(
        `update bag set label = 'y' where label = 'x'`,
        `update bag set label = 'z' where ctid = (select ctid from bag where label = 'y' limit 1)`,
        `update bag set label = 'zz' where label = 'z'`,
        `delete from bag where ctid = (select ctid from bag where label = 'y' limit 1)`,
        `insert into bag values ('y', null, 1, null)`,
        `update bag set label = 'y2' where label = 'y'`,
      )
      // A FULL table with a primary key is keyed by it: updates (the key moved too) and deletes.
      await step(
        `update keyed_full set note = 'u' where id <= 20`,
        `update keyed_full set id = id + 100 where id between 5 and 8`,
        `delete from keyed_full where id > 40`,
      )
      await step(`insert into pairs values (-1, 'end', 'end')`)
    } finally {
      await client.end()
    }

    const transactions = await readAll('slot_apply', 'pub_apply')
    const relations = relationsOf(transactions)
    const warehouse = await clientFor(db.warehouseUrl)
    try {
      for (const schema of ['from_transactions', 'from_records']) {
        await warehouse.query(`create schema ${schema}`)
        await warehouse.query(BRONZE_TABLES.replaceAll('%s', schema))
      }
      // Applied in batches of a few transactions, as a capture does.
      for (let at = 0; at < transactions.length; at += 3) {
        const batch = transactions.slice(at, at + 3)
        await warehouse.query('begin')
        await applyTransactions(warehouse, 'from_transactions', relations, batch)
        await applyChanges(warehouse, 'from_records', relations, changeRecords(batch))
        await warehouse.query('commit')
      }
    } finally {
      await warehouse.end()
    }
    for (const schema of ['from_transactions', 'from_records']) {
      for (const [table, columns] of [
        ['pairs', ['a', 'b', 'v']],
        ['bag', ['label', 'doc', 'n', 'spot']],
        ['keyed_full', ['id', 'note']],
      ] as const) {
        const compared = await tablesEqual(db.sourceUrl, table, db.warehouseUrl, `${schema}.br_${table}`, [...columns])
        expect({ schema, table, ...compared }).toEqual({
          schema,
          table,
          missing: 0,
          extra: 0,
          sourceRows: compared.sourceRows,
          targetRows: compared.sourceRows,
        })
      }
    }
    expect((await db.sourceSql(`select count(*)::int as n from bag where label is null or label = ''`))[0]).toEqual({ n: 2 })
  })
})
