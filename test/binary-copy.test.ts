import { describe, expect, it } from 'vitest'
import { bronzeMetadata, ConfigError, copySource, extract, memorySink, postgresSink, type Source } from '../src/index.js'
import { BINARY_SIGNATURE, BinaryTuples, onlyTupleFields } from '../src/pg/binary-copy.js'
import { tablesEqual } from './support/databases.js'
import { useDatabases } from './support/fixtures.js'

const db = useDatabases('binary')

/** A field as COPY binary writes it: an int32 length (-1 for NULL) and the bytes. */
function field(bytes: Buffer | null): Buffer {
  const length = Buffer.alloc(4)
  length.writeInt32BE(bytes === null ? -1 : bytes.length)
  return bytes === null ? length : Buffer.concat([length, bytes])
}

function tuple(fields: Buffer[]): Buffer {
  const count = Buffer.alloc(2)
  count.writeInt16BE(fields.length)
  return Buffer.concat([count, ...fields])
}

function header(extension = Buffer.alloc(0)): Buffer {
  const numbers = Buffer.alloc(8)
  numbers.writeUInt32BE(0, 0)
  numbers.writeUInt32BE(extension.length, 4)
  return Buffer.concat([BINARY_SIGNATURE, numbers, extension])
}

const TRAILER = Buffer.from([0xff, 0xff])

/** Three tuples: ordinary, with a NULL and an empty field, and one field of 300 bytes. */
const rows = [
  [field(Buffer.from('abc')), field(Buffer.from([0, 0, 0, 7]))],
  [field(null), field(Buffer.alloc(0))],
  [field(Buffer.alloc(300, 0x5a)), field(Buffer.from([1]))],
]
const stream = Buffer.concat([header(Buffer.from('ext!')), ...rows.map(tuple), TRAILER])
const suffix = Buffer.concat([field(Buffer.from('run')), field(null)])
const appended = Buffer.concat([header(Buffer.from('ext!')), ...rows.map((fields) => tuple([...fields, suffix.subarray(0, 7), suffix.subarray(7)])), TRAILER])

function through(scanner: BinaryTuples, pieces: Buffer[]): Buffer {
  const out = pieces.map((piece) => scanner.push(piece))
  scanner.end()
  return Buffer.concat(out)
}

describe('BinaryTuples (COPY binary format)', () => {
  it('counts tuples and passes the bytes through, cut at every byte', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const scanner = new BinaryTuples()
      const out = through(scanner, [stream.subarray(0, cut), stream.subarray(cut)])
      expect({ cut, tuples: scanner.tuples, same: out.equals(stream) }).toEqual({ cut, tuples: 3, same: true })
    }
  })

  it('appends fields to every tuple and raises its field count, cut at every pair of bytes', () => {
    for (let first = 0; first <= stream.length; first += 3) {
      for (let second = first; second <= stream.length; second += 5) {
        const scanner = new BinaryTuples({ fields: suffix, count: 2 })
        const out = through(scanner, [stream.subarray(0, first), stream.subarray(first, second), stream.subarray(second)])
        expect({ first, second, same: out.equals(appended) }).toEqual({ first, second, same: true })
      }
    }
  })

  it('refuses a stream cut before its trailer, data after it, and a stream that is not binary COPY', () => {
    const cut = new BinaryTuples()
    cut.push(stream.subarray(0, stream.length - 1))
    expect(() => cut.end()).toThrow(/ended before its trailer \(after 3 tuples\)/)
    expect(() => new BinaryTuples().push(Buffer.concat([stream, Buffer.from([0])]))).toThrow(/continues after its trailer/)
    expect(() => new BinaryTuples().push(Buffer.from('1\tabc\n'.repeat(10)))).toThrow(/PGCOPY signature/)
  })

  it('reads the fields of a one-tuple COPY', () => {
    const one = Buffer.concat([header(), tuple(rows[0] as Buffer[]), TRAILER])
    expect(onlyTupleFields(one)).toEqual({ fields: Buffer.concat(rows[0] as Buffer[]), count: 2 })
    expect(() => onlyTupleFields(stream)).toThrow(/exactly one tuple/)
  })
})

describe('the binary byte path on a real PostgreSQL', () => {
  it('falls back to text for enums, domains, composites and arrays of each, and lands them equal', async () => {
    await db.sourceSql(`create type colour as enum ('red', 'green')`)
    await db.sourceSql(`create domain percent as numeric(5,2) check (value between 0 and 100)`)
    await db.sourceSql(`create type pair as (a int, b text)`)
    await db.sourceSql(`create table mapped (id int primary key, plain bigint, c_enum colour, c_domain percent, c_composite pair,
      c_enum_arr colour[], c_domain_arr percent[], c_composite_arr pair[])`)
    await db.sourceSql(`insert into mapped values
      (1, 10, 'red', 12.5, row(1, 'x,y'), '{red,green}', '{1.5,NULL}', array[row(2, 'q"')::pair, null]),
      (2, null, null, null, null, null, null, null)`)
    const mapped = ['c_enum', 'c_domain', 'c_composite', 'c_enum_arr', 'c_domain_arr', 'c_composite_arr']
    for (const name of mapped) {
      const report = await extract({
        from: copySource(db.source, { table: 'mapped', columns: ['id', 'plain', name] }),
        through: [bronzeMetadata()],
        to: postgresSink(db.warehouse, { table: `mapped_${name}` }),
      })
      expect({ name, format: report.copyFormat, reason: report.copyFormatReason }).toEqual({
        name,
        format: 'text',
        reason: expect.stringContaining(`column "${name}" has a type of the source database's own`),
      })
      expect(await tablesEqual(db.sourceUrl, 'mapped', db.warehouseUrl, `bronze.mapped_${name}`, ['id', 'plain', name])).toEqual({
        missing: 0,
        extra: 0,
        sourceRows: 2,
        targetRows: 2,
      })
    }
    // The same table without them goes binary.
    const plain = await extract({
      from: copySource(db.source, { table: 'mapped', columns: ['id', 'plain'] }),
      to: postgresSink(db.warehouse, { table: 'mapped_plain' }),
    })
    expect(plain.copyFormat).toBe('binary')
  })

  it('appends as text into a bronze column of a wider type, binary once it matches, and every row lands once', async () => {
    await db.sourceSql(`create table counts (id int primary key, n int, label text)`)
    await db.sourceSql(`insert into counts select g, g * 3, 'row ' || g from generate_series(1, 500) g`)
    // A bronze table made earlier with n as bigint: int4's binary form is not int8's, so this run goes text.
    await db.warehouseSql(`create schema if not exists bronze`)
    await db.warehouseSql(`create table bronze.counts_log (id int, n bigint, label text)`)
    const run = () =>
      extract({
        from: copySource(db.source, { table: 'counts' }),
        through: [bronzeMetadata()],
        to: postgresSink(db.warehouse, { table: 'counts_log', mode: 'append' }),
      })
    const first = await run()
    expect([first.copyFormat, first.copyFormatReason]).toEqual(['text', 'column "n" lands as bigint, not as its source type'])
    await db.warehouseSql(`alter table bronze.counts_log alter column n type integer`)
    const second = await run()
    expect([second.copyFormat, second.rows]).toEqual(['binary', 500])
    const [row] = await db.warehouseSql(
      `select count(*)::int as rows, count(distinct id)::int as ids, count(distinct _bronze_loaded_at)::int as runs,
              count(*) filter (where n = id * 3 and label = 'row ' || id and _bronze_table = 'counts')::int as right
         from bronze.counts_log`,
    )
    expect(row).toEqual({ rows: 1000, ids: 500, runs: 2, right: 1000 })
  })

  it('merges binary rows over existing keys', async () => {
    await db.sourceSql(`create table accounts (id int primary key, balance numeric(12,2), seen timestamptz)`)
    await db.sourceSql(`insert into accounts select g, g, '2024-01-01'::timestamptz + g * interval '1 hour' from generate_series(1, 300) g`)
    const merge = () =>
      extract({ from: copySource(db.source, { table: 'accounts' }), through: [bronzeMetadata()], to: postgresSink(db.warehouse, { mode: 'merge' }) })
    expect((await merge()).copyFormat).toBe('binary')
    await db.sourceSql(`update accounts set balance = balance * 2 where id % 2 = 0; insert into accounts values (301, -1, null)`)
    const second = await merge()
    expect([second.copyFormat, second.rows]).toEqual(['binary', 301])
    expect(await tablesEqual(db.sourceUrl, 'accounts', db.warehouseUrl, 'bronze.br_accounts', ['id', 'balance', 'seen'])).toEqual({
      missing: 0,
      extra: 0,
      sourceRows: 301,
      targetRows: 301,
    })
  })

  it('goes text when the source server is newer than the warehouse, binary when it is older', async () => {
    await db.sourceSql(`create table versions (id int primary key, at timestamptz)`)
    await db.sourceSql(`insert into versions select g, now() from generate_series(1, 10) g`)
    const [{ version } = {}] = await db.warehouseSql(`select current_setting('server_version_num')::int as version`)
    /** copySource as seen from a server of another version. */
    const claiming = (serverVersion: number): Source => {
      const source = copySource(db.source, { table: 'versions' })
      return {
        ...source,
        open: async (ctx) => {
          const opened = await source.open!(ctx)
          return { ...opened, copyBinary: { ...opened.copyBinary!, serverVersion } }
        },
      }
    }
    const newer = await extract({ from: claiming((version as number) + 10_000), to: postgresSink(db.warehouse, { table: 'versions_newer' }) })
    expect(newer.copyFormat).toBe('text')
    expect(newer.copyFormatReason).toMatch(/^the source server \(PostgreSQL \d+\) is newer than the warehouse \(\d+\)/)
    const older = await extract({
      from: claiming(Math.max(100_000, (version as number) - 10_000)),
      to: postgresSink(db.warehouse, { table: 'versions_older' }),
    })
    expect(older.copyFormat).toBe('binary')
    for (const table of ['versions_newer', 'versions_older']) {
      expect(await tablesEqual(db.sourceUrl, 'versions', db.warehouseUrl, `bronze.${table}`, ['id', 'at'])).toMatchObject({ missing: 0, extra: 0 })
    }
  })

  it('reports progress in rows on the binary path', async () => {
    await db.sourceSql(`create table progress (id int primary key, payload text)`)
    await db.sourceSql(`insert into progress select g, repeat('x', 200) from generate_series(1, 20000) g`)
    const seen: number[] = []
    const report = await extract({
      from: copySource(db.source, { table: 'progress' }),
      through: [bronzeMetadata()],
      to: postgresSink(db.warehouse),
      onProgress: (progress) => seen.push(progress.rows),
    })
    expect(report.copyFormat).toBe('binary')
    expect(seen.at(-1)).toBe(20_000)
    expect(seen).toEqual([...seen].sort((a, b) => a - b))
  })

  it("refuses copyFormat: 'binary' where rows are decoded, and a format it does not know, before anything runs", async () => {
    await db.sourceSql(`create table refusals (id int primary key)`)
    const attempts = [
      () =>
        extract({
          from: copySource(db.source, { table: 'refusals' }),
          to: postgresSink(db.warehouse, { table: 'refused_1' }),
          fastPath: false,
          copyFormat: 'binary',
        }),
      () => extract({ from: copySource(db.source, { table: 'refusals' }), to: memorySink(), copyFormat: 'binary' }),
      () =>
        extract({ from: copySource(db.source, { table: 'refusals' }), to: postgresSink(db.warehouse, { table: 'refused_3' }), copyFormat: 'fast' as 'binary' }),
    ]
    for (const attempt of attempts) await expect(attempt()).rejects.toBeInstanceOf(ConfigError)
    await expect(attempts[0]!()).rejects.toThrow(/copyFormat: 'binary' needs the byte path/)
    const [row] = await db.warehouseSql(`select count(*)::int as n from pg_class where relname like 'refused_%'`)
    expect(row?.n).toBe(0)
  })
})
