import { formatArrayLiteral } from '../pg/array-literal.js'
import { copyField } from '../pg/copy-text-encoder.js'
import { columnJson } from './column-json.js'
import { lsnText, timestampText, UNCHANGED, type PgOutputMessage, type TupleValue } from './pgoutput.js'
import type { CommittedTransaction, RawChange } from './transactions.js'

type Relation = Extract<PgOutputMessage, { tag: 'relation' }>

interface RelationEncoder {
  /** `schema\ttable`, escaped. */
  readonly names: string
  /** `"column":` for each column. */
  readonly keys: readonly string[]
  readonly json: readonly ((text: string) => string)[]
  readonly keyIndexes: readonly number[]
  readonly columnNames: readonly string[]
}

/**
 * Encodes committed transactions as COPY text lines of the change log (`CHANGE_LOG_COLUMNS` but the last,
 * `_bronze_loaded_at`, which the table's default stamps when the batch is written), straight from pgoutput's text
 * values: one string per batch, no row objects. The values are those `changeRecords` gives, in JSON.
 */
export class ChangeLogLines {
  readonly #encoders = new WeakMap<Relation, RelationEncoder>()

  encode(transactions: readonly CommittedTransaction[]): string {
    let out = ''
    for (const transaction of transactions) {
      const shared = `\t${transaction.commitLsn.text}\t${timestampText(transaction.commitTime)}\t${transaction.xid}\t`
      let seq = transaction.firstSeq ?? 0
      for (const change of transaction.changes) {
        if (change.kind === 'truncate') {
          const data = `{"cascade":${change.cascade},"restart_identity":${change.restartIdentity}}`
          for (const relation of change.relations) {
            const names = relation ? this.#encoder(relation).names : '\\N\t\\N'
            out += `${lsnText(change.lsn)}${shared}${seq++}\ttruncate\t${names}\t\\N\t${data}\t\\N\t{}\n`
          }
        } else if (change.kind === 'message') {
          const data = copyField(`{"prefix":${JSON.stringify(change.prefix)},"content":${JSON.stringify(change.content.toString('utf8'))}}`)
          out += `${lsnText(change.lsn)}${shared}${seq++}\tmessage\t\\N\t\\N\t\\N\t${data}\t\\N\t{}\n`
        } else {
          out += `${lsnText(change.lsn)}${shared}${seq++}\t${change.operation}\t${this.#row(change)}\n`
        }
      }
    }
    return out
  }

  #row(change: Extract<RawChange, { kind: 'row' }>): string {
    const encoder = this.#encoder(change.relation)
    const { newTuple, oldTuple } = change
    let key = '\\N'
    if (encoder.keyIndexes.length) {
      key = '{'
      for (const index of encoder.keyIndexes) {
        const old = oldTuple?.[index]
        const value = old === undefined || old === UNCHANGED ? newTuple?.[index] : old
        if (value === UNCHANGED || value === undefined) continue
        key += `${key.length > 1 ? ',' : ''}${encoder.keys[index]}${value === null ? 'null' : (encoder.json[index] as (text: string) => string)(value)}`
      }
      key = copyField(`${key}}`)
    }
    let unchanged = '{}'
    if (newTuple?.includes(UNCHANGED)) {
      unchanged = copyField(
        formatArrayLiteral(
          encoder.columnNames.filter((_, index) => newTuple[index] === UNCHANGED),
          String,
        ),
      )
    }
    return `${encoder.names}\t${key}\t${this.#object(encoder, newTuple)}\t${this.#object(encoder, oldTuple)}\t${unchanged}`
  }

  /** A tuple as a JSON object, unchanged TOAST values left out; `\N` when there is no tuple. */
  #object(encoder: RelationEncoder, tuple: readonly TupleValue[] | undefined): string {
    if (!tuple) return '\\N'
    let out = '{'
    for (let index = 0; index < encoder.keys.length; index++) {
      const value = tuple[index]
      if (value === UNCHANGED) continue
      out += `${out.length > 1 ? ',' : ''}${encoder.keys[index]}${value === null || value === undefined ? 'null' : (encoder.json[index] as (text: string) => string)(value)}`
    }
    return copyField(`${out}}`)
  }

  #encoder(relation: Relation): RelationEncoder {
    let encoder = this.#encoders.get(relation)
    if (!encoder) {
      encoder = {
        names: `${copyField(relation.schema)}\t${copyField(relation.table)}`,
        keys: relation.columns.map((column) => `${JSON.stringify(column.name)}:`),
        json: relation.columns.map((column) => columnJson(column.typeOid)),
        keyIndexes: relation.columns.flatMap((column, index) => (column.isKey ? [index] : [])),
        columnNames: relation.columns.map((column) => column.name),
      }
      this.#encoders.set(relation, encoder)
    }
    return encoder
  }
}
