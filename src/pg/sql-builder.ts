import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler } from 'kysely'

/**
 * A Kysely instance that only compiles: pg-datakit builds its own SQL with it, so identifiers are quoted and
 * values are bound parameters by construction. It never opens a connection.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tables are known at run time, not as a database type
export const builder = new Kysely<any>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
})
