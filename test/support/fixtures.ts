import { afterAll, beforeAll } from 'vitest'
import { connect, type Connection, type ConnectionOptions } from '../../src/index.js'
import { adminQuery, createDatabase } from './databases.js'

export interface Databases {
  source: Connection
  warehouse: Connection
  sourceUrl: string
  warehouseUrl: string
  sourceDatabase: string
  warehouseDatabase: string
  /** Runs SQL as superuser in the source database. */
  sourceSql(text: string, values?: unknown[]): Promise<Record<string, unknown>[]>
  /** Runs SQL as superuser in the warehouse database. */
  warehouseSql(text: string, values?: unknown[]): Promise<Record<string, unknown>[]>
}

/** A fresh source database and a fresh warehouse database for one test file, dropped afterwards. */
export function useDatabases(prefix: string, options: Omit<ConnectionOptions, 'url'> = {}): Databases {
  const state = {} as Databases
  const drops: (() => Promise<void>)[] = []
  beforeAll(async () => {
    const source = await createDatabase(`${prefix}_src`)
    const warehouse = await createDatabase(`${prefix}_wh`)
    drops.push(source.drop, warehouse.drop)
    state.sourceUrl = source.url
    state.warehouseUrl = warehouse.url
    state.sourceDatabase = source.name
    state.warehouseDatabase = warehouse.name
    state.source = connect({ ...options, url: source.url })
    state.warehouse = connect({ ...options, url: warehouse.url })
    state.sourceSql = async (text, values) => (await adminQuery(text, values, source.name)).rows
    state.warehouseSql = async (text, values) => (await adminQuery(text, values, warehouse.name)).rows
  })
  afterAll(async () => {
    await state.source?.close()
    await state.warehouse?.close()
    for (const drop of drops) await drop()
  })
  return state
}
