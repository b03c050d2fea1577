/** SQLite storage of did:plc operations: one row per operation, in acceptance order (seq). */
import { migrateToLatest, openSqlite, type Database, type Migrations } from '@stratos/core/db'
import { sql, type Generated, type Kysely } from 'kysely'
import type { AnyPlcOp, LogEntry } from './types.js'

interface OperationTable {
  seq: Generated<number>
  did: string
  cid: string
  /** the signed operation as JSON text */
  operation: string
  nullified: number
  /** ISO 8601, millisecond precision, UTC (sorts as text) */
  createdAt: string
}

export interface PlcDbSchema {
  plc_operation: OperationTable
}

const migrations: Migrations = {
  '001-operations': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('plc_operation')
        .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('did', 'text', (c) => c.notNull())
        .addColumn('cid', 'text', (c) => c.notNull())
        .addColumn('operation', 'text', (c) => c.notNull())
        .addColumn('nullified', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('createdAt', 'text', (c) => c.notNull())
        .execute()
      await db.schema.createIndex('plc_operation_did_cid').unique().on('plc_operation').columns(['did', 'cid']).execute()
      await db.schema.createIndex('plc_operation_created_at').on('plc_operation').columns(['createdAt', 'seq']).execute()
    },
  },
}

export interface StoredEntry extends LogEntry {
  did: string
  seq: number
  createdAt: string
}

/** The `/export` line format when paging by seq. */
export interface SequencedOp {
  type: 'sequenced_op'
  did: string
  operation: AnyPlcOp
  cid: string
  createdAt: string
  seq: number
}

/** The legacy `/export` line format (paging by createdAt). */
export interface LegacyExportedOp {
  did: string
  operation: AnyPlcOp
  cid: string
  nullified: boolean
  createdAt: string
}

export class HeadMismatchError extends Error {
  constructor(did: string) {
    super(`the log of ${did} changed while the operation was being validated; retry`)
    this.name = 'HeadMismatchError'
  }
}

type Row = {
  seq: number
  did: string
  cid: string
  operation: string
  nullified: number
  createdAt: string
}

function toEntry(row: Row): StoredEntry {
  return {
    seq: row.seq,
    did: row.did,
    cid: row.cid,
    operation: JSON.parse(row.operation) as AnyPlcOp,
    nullified: row.nullified !== 0,
    createdAt: row.createdAt,
  }
}

/** Runs tasks one at a time per key (writes for one DID never interleave). */
export class KeyedMutex {
  private tails = new Map<string, Promise<unknown>>()

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    const result = prev.then(task, task)
    const tail = result.then(
      () => undefined,
      () => undefined,
    )
    this.tails.set(key, tail)
    try {
      return await result
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }
}

export class PlcStore {
  private constructor(private readonly database: Database<PlcDbSchema>) {}

  /** Opens (creating and migrating) the SQLite database at `path` (':memory:' for a throwaway one). */
  static async open(path: string): Promise<PlcStore> {
    const database = openSqlite<PlcDbSchema>(path)
    try {
      await migrateToLatest(database.db, migrations)
    } catch (err) {
      await database.close()
      throw err
    }
    return new PlcStore(database)
  }

  get db(): Kysely<PlcDbSchema> {
    return this.database.db
  }

  async close(): Promise<void> {
    await this.database.close()
  }

  async healthCheck(): Promise<void> {
    await sql`select 1`.execute(this.db)
  }

  /** Every operation of the DID (nullified ones included), in acceptance order. */
  async getLog(did: string): Promise<StoredEntry[]> {
    const rows = await this.db.selectFrom('plc_operation').selectAll().where('did', '=', did).orderBy('seq', 'asc').execute()
    return rows.map(toEntry)
  }

  /** The DID's current (latest valid) operation, or undefined if the DID is unknown. */
  async lastActive(did: string): Promise<StoredEntry | undefined> {
    const row = await this.db
      .selectFrom('plc_operation')
      .selectAll()
      .where('did', '=', did)
      .where('nullified', '=', 0)
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst()
    return row ? toEntry(row) : undefined
  }

  /**
   * Appends an accepted operation and marks the operations it nullifies, in one transaction. `expectedHead` is
   * the CID of the latest valid operation the validation saw (null for a genesis); if the log moved on in the
   * meantime nothing is written and HeadMismatchError is thrown.
   */
  async append(
    did: string,
    entry: { cid: string; operation: AnyPlcOp; createdAt: Date; nullified: string[] },
    expectedHead: string | null,
  ): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      const head = await tx
        .selectFrom('plc_operation')
        .select('cid')
        .where('did', '=', did)
        .where('nullified', '=', 0)
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst()
      if ((head?.cid ?? null) !== expectedHead) throw new HeadMismatchError(did)
      if (entry.nullified.length > 0) {
        await tx
          .updateTable('plc_operation')
          .set({ nullified: 1 })
          .where('did', '=', did)
          .where('cid', 'in', entry.nullified)
          .execute()
      }
      const inserted = await tx
        .insertInto('plc_operation')
        .values({
          did,
          cid: entry.cid,
          operation: JSON.stringify(entry.operation),
          nullified: 0,
          createdAt: entry.createdAt.toISOString(),
        })
        .returning('seq')
        .executeTakeFirstOrThrow()
      return inserted.seq
    })
  }

  /** Operations with seq greater than `after`, in seq order. */
  async exportAfterSeq(after: number, count: number): Promise<SequencedOp[]> {
    const rows = await this.db
      .selectFrom('plc_operation')
      .selectAll()
      .where('seq', '>', after)
      .orderBy('seq', 'asc')
      .limit(count)
      .execute()
    return rows.map((r) => ({
      type: 'sequenced_op',
      did: r.did,
      operation: JSON.parse(r.operation) as AnyPlcOp,
      cid: r.cid,
      createdAt: r.createdAt,
      seq: r.seq,
    }))
  }

  /** Legacy export: operations created strictly after `after` (or from the start), in createdAt order. */
  async exportAfterTime(after: Date | undefined, count: number): Promise<LegacyExportedOp[]> {
    let q = this.db.selectFrom('plc_operation').selectAll().orderBy('createdAt', 'asc').orderBy('seq', 'asc').limit(count)
    if (after) q = q.where('createdAt', '>', after.toISOString())
    const rows = await q.execute()
    return rows.map((r) => ({
      did: r.did,
      operation: JSON.parse(r.operation) as AnyPlcOp,
      cid: r.cid,
      nullified: r.nullified !== 0,
      createdAt: r.createdAt,
    }))
  }

  async countOperations(): Promise<number> {
    const row = await this.db
      .selectFrom('plc_operation')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow()
    return Number(row.n)
  }
}
