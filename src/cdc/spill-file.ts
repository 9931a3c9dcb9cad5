import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { UNCHANGED, type PgOutputMessage, type TupleValue } from './pgoutput.js'
import type { RawChange } from './transactions.js'

type Relation = Extract<PgOutputMessage, { tag: 'relation' }>

const WRITE_BUFFER = 1 << 20

/**
 * A transaction's changes on local disk, so that one of any size holds only a buffer in memory until it commits.
 * The file is unlinked as soon as it is opened: a process that dies leaves nothing behind, and only this object can
 * read it. Relations stay in memory (one per Relation message, few); changes are written in a compact binary form.
 */
export class SpillFile {
  readonly #fd: number
  readonly #relations: Relation[] = []
  readonly #relationIndex = new Map<Relation, number>()
  #buffer = Buffer.allocUnsafe(WRITE_BUFFER)
  #used = 0
  #size = 0
  #count = 0
  #closed = false

  constructor(directory = tmpdir()) {
    const path = join(directory, `pg-datakit-spill-${process.pid}-${randomBytes(6).toString('hex')}`)
    this.#fd = openSync(path, 'w+', 0o600)
    unlinkSync(path)
  }

  /** The relations of the changes written (a rolled-back subtransaction's included), without reading the file. */
  get relations(): readonly Relation[] {
    return this.#relations
  }

  /** Changes written. */
  get count(): number {
    return this.#count
  }

  /** Bytes on disk. */
  get bytes(): number {
    return this.#size + this.#used
  }

  append(change: RawChange): void {
    const writer = new RecordWriter()
    writer.u8(change.kind === 'row' ? 0 : change.kind === 'truncate' ? 1 : 2)
    writer.u64(change.lsn)
    writer.u32(change.subXid ?? 0xffffffff)
    if (change.kind === 'row') {
      writer.u32(this.#relation(change.relation))
      writer.u8(change.operation === 'insert' ? 0 : change.operation === 'update' ? 1 : 2)
      writer.tuple(change.newTuple)
      writer.tuple(change.oldTuple)
    } else if (change.kind === 'truncate') {
      writer.u8((change.cascade ? 1 : 0) | (change.restartIdentity ? 2 : 0))
      writer.u32(change.relations.length)
      for (const relation of change.relations) writer.u32(relation ? this.#relation(relation) : 0xffffffff)
    } else {
      writer.text(change.prefix)
      writer.bytes(change.content)
    }
    const record = writer.done()
    if (this.#used + 4 + record.length > this.#buffer.length) this.#flush()
    if (4 + record.length > this.#buffer.length) this.#buffer = Buffer.allocUnsafe(4 + record.length)
    this.#buffer.writeUInt32BE(record.length, this.#used)
    record.copy(this.#buffer, this.#used + 4)
    this.#used += 4 + record.length
    this.#count++
  }

  /**
   * The changes in order, `size` at a time, without those of `dropped` subtransactions (rolled back to a savepoint).
   * Each call reads the file from its start.
   */
  *chunks(size: number, dropped: ReadonlySet<number> = new Set()): Generator<RawChange[]> {
    this.#flush()
    // One read buffer for the whole pass: a record cut at its end is moved to its start and the next read goes after
    // it, so reading allocates nothing but the changes (a Buffer per block would wait for the GC as external memory).
    let block = Buffer.allocUnsafe(WRITE_BUFFER)
    let position = 0
    let held = 0
    let chunk: RawChange[] = []
    while (position < this.#size) {
      const read = readSync(this.#fd, block, held, Math.min(block.length - held, this.#size - position), position)
      if (read === 0) throw new Error('spill file: unexpected end of file')
      position += read
      const end = held + read
      let offset = 0
      while (offset + 4 <= end) {
        const length = block.readUInt32BE(offset)
        if (offset + 4 + length > end) break
        const change = this.#read(block.subarray(offset + 4, offset + 4 + length))
        offset += 4 + length
        if (change.subXid !== undefined && dropped.has(change.subXid)) continue
        chunk.push(change)
        if (chunk.length >= size) {
          yield chunk
          chunk = []
        }
      }
      held = end - offset
      if (held > 0 && offset > 0) block.copyWithin(0, offset, end)
      // A record larger than the buffer: a larger buffer for it.
      if (held >= 4 && 4 + block.readUInt32BE(0) > block.length) {
        const larger = Buffer.allocUnsafe(4 + block.readUInt32BE(0))
        block.copy(larger, 0, 0, held)
        block = larger
      }
    }
    if (chunk.length) yield chunk
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    closeSync(this.#fd)
  }

  #flush(): void {
    if (this.#used === 0) return
    let written = 0
    while (written < this.#used) written += writeSync(this.#fd, this.#buffer, written, this.#used - written, this.#size + written)
    this.#size += this.#used
    this.#used = 0
  }

  #relation(relation: Relation): number {
    let index = this.#relationIndex.get(relation)
    if (index === undefined) {
      index = this.#relations.push(relation) - 1
      this.#relationIndex.set(relation, index)
    }
    return index
  }

  #read(record: Buffer): RawChange {
    const reader = new RecordReader(record)
    const kind = reader.u8()
    const lsn = reader.u64()
    const rawSubXid = reader.u32()
    const subXid = rawSubXid === 0xffffffff ? undefined : rawSubXid
    if (kind === 0) {
      const relation = this.#relations[reader.u32()] as Relation
      const operation = (['insert', 'update', 'delete'] as const)[reader.u8()] as 'insert' | 'update' | 'delete'
      const newTuple = reader.tuple()
      const oldTuple = reader.tuple()
      return { kind: 'row', lsn, operation, relation, newTuple, oldTuple, subXid }
    }
    if (kind === 1) {
      const flags = reader.u8()
      const count = reader.u32()
      const relations: (Relation | undefined)[] = []
      for (let index = 0; index < count; index++) {
        const at = reader.u32()
        relations.push(at === 0xffffffff ? undefined : this.#relations[at])
      }
      return { kind: 'truncate', lsn, relations, cascade: (flags & 1) === 1, restartIdentity: (flags & 2) === 2, subXid }
    }
    return { kind: 'message', lsn, prefix: reader.text(), content: reader.bytes(), subXid }
  }
}

/** Builds one record; strings are measured first so each record is one allocation. */
class RecordWriter {
  readonly #parts: (Buffer | string | number)[] = []
  readonly #kinds: number[] = []
  #length = 0

  u8(value: number): void {
    this.#push(0, value, 1)
  }
  u32(value: number): void {
    this.#push(1, value, 4)
  }
  u64(value: bigint): void {
    this.#parts.push(Number(value >> 32n), Number(value & 0xffffffffn))
    this.#kinds.push(1, 1)
    this.#length += 8
  }
  text(value: string): void {
    const length = Buffer.byteLength(value)
    this.u32(length)
    this.#push(2, value, length)
  }
  bytes(value: Buffer): void {
    this.u32(value.length)
    this.#push(3, value, value.length)
  }
  /** A tuple: its length (0xffffffff when absent), then each value as 0 NULL, 1 unchanged TOAST, or 2 and its text. */
  tuple(values: readonly TupleValue[] | undefined): void {
    if (!values) return this.u32(0xffffffff)
    this.u32(values.length)
    for (const value of values) {
      if (value === null) this.u8(0)
      else if (value === UNCHANGED) this.u8(1)
      else {
        this.u8(2)
        this.text(value)
      }
    }
  }
  done(): Buffer {
    const out = Buffer.allocUnsafe(this.#length)
    let offset = 0
    this.#parts.forEach((part, index) => {
      const kind = this.#kinds[index]
      if (kind === 0) offset = out.writeUInt8(part as number, offset)
      else if (kind === 1) offset = out.writeUInt32BE(part as number, offset)
      else if (kind === 2) offset += out.write(part as string, offset)
      else offset += (part as Buffer).copy(out, offset)
    })
    return out
  }
  #push(kind: number, part: Buffer | string | number, length: number): void {
    this.#parts.push(part)
    this.#kinds.push(kind)
    this.#length += length
  }
}

class RecordReader {
  #offset = 0
  constructor(private readonly record: Buffer) {}
  u8(): number {
    return this.record.readUInt8(this.#offset++)
  }
  u32(): number {
    const value = this.record.readUInt32BE(this.#offset)
    this.#offset += 4
    return value
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32())
  }
  text(): string {
    const length = this.u32()
    const value = this.record.toString('utf8', this.#offset, this.#offset + length)
    this.#offset += length
    return value
  }
  bytes(): Buffer {
    const length = this.u32()
    const value = Buffer.from(this.record.subarray(this.#offset, this.#offset + length))
    this.#offset += length
    return value
  }
  tuple(): TupleValue[] | undefined {
    const count = this.u32()
    if (count === 0xffffffff) return undefined
    const values: TupleValue[] = []
    for (let index = 0; index < count; index++) {
      const tag = this.u8()
      values.push(tag === 0 ? null : tag === 1 ? UNCHANGED : this.text())
    }
    return values
  }
}
