import { describe, expect, expectTypeOf, it } from 'vitest'
import { bronzeMetadata, extract, memorySink, querySource, type MemorySink } from '../src/index.js'
import { useDatabases } from './support/fixtures.js'

interface DB {
  fruit: { id: number; name: string; weight: string }
}
type Fruit = { id: number; name: string }

const db = useDatabases('memsink')

describe('memorySink', () => {
  it('keeps the row type querySource infers: a sink of another row type does not compile (checked by tsc)', async () => {
    await db.sourceSql(`create table fruit (id int primary key, name text not null, weight numeric(6,3) not null)`)
    await db.sourceSql(`insert into fruit values (1, 'apple', 0.182), (2, 'pear', 0.209)`)
    const query = db.source.kysely<DB>().selectFrom('fruit').select(['id', 'name']).orderBy('id')

    const sink = memorySink<Fruit>()
    await extract({ from: querySource(db.source, query, { name: 'fruit' }), to: sink })
    expectTypeOf(sink.rows).toEqualTypeOf<readonly Fruit[]>()
    expect(sink.rows).toEqual([
      { id: 1, name: 'apple' },
      { id: 2, name: 'pear' },
    ])

    // An inline memorySink() takes the source's row type from extract().
    const report = await extract({ from: querySource(db.source, query, { name: 'fruit' }), to: memorySink() })
    expect(report.rows).toBe(2)

    const wrong = memorySink<{ id: string; colour: string }>()
    // @ts-expect-error: the query's rows are { id: number; name: string }, not this sink's
    await expect(extract({ from: querySource(db.source, query, { name: 'fruit' }), to: wrong })).resolves.toBeDefined()

    // Transforms may reshape rows: then the sink's type is the caller's to choose.
    const metadata: MemorySink<Fruit & { _bronze_table: string }> = memorySink()
    await extract({ from: querySource(db.source, query, { name: 'fruit' }), through: [bronzeMetadata()], to: metadata })
    expect(metadata.rows[0]?._bronze_table).toBe('fruit')
  })
})
