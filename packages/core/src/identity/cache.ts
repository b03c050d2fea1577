/**
 * DID document caches. A cache only stores documents and when they were fetched; the resolver decides
 * what is fresh, stale (serve, refresh in the background) or expired (refetch first).
 */
import type { Kysely, Migration } from 'kysely'
import { sql } from 'kysely'
import { openSqlite, type Database } from '../db/index.js'
import type { DidDocument } from './did-doc.js'

export interface CachedDidDocument {
  doc: DidDocument
  /** ms since epoch when the document was fetched */
  updatedAt: number
}

export interface IdentityCache {
  get(did: string): Promise<CachedDidDocument | null>
  set(did: string, doc: DidDocument, updatedAt: number): Promise<void>
  delete(did: string): Promise<void>
}

/** In-process cache, bounded; evicts the least recently written entry when full. */
export class MemoryIdentityCache implements IdentityCache {
  private readonly entries = new Map<string, CachedDidDocument>()
  constructor(private readonly maxEntries = 100_000) {}

  async get(did: string): Promise<CachedDidDocument | null> {
    return this.entries.get(did) ?? null
  }

  async set(did: string, doc: DidDocument, updatedAt: number): Promise<void> {
    this.entries.delete(did)
    this.entries.set(did, { doc, updatedAt })
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value
      if (oldest === undefined) break
      this.entries.delete(oldest)
    }
  }

  async delete(did: string): Promise<void> {
    this.entries.delete(did)
  }

  get size(): number {
    return this.entries.size
  }
}

export interface IdentityCacheSchema {
  identity_did_cache: { did: string; doc: string; updated_at: number | string | bigint }
}

export const IDENTITY_CACHE_TABLE = 'identity_did_cache'

/**
 * The cache table, as a kysely migration a service can add to its own migration set
 * (`SqliteIdentityCache.ensureSchema()` creates the same table idempotently without a migrator).
 */
export const identityCacheMigration: Migration = {
  async up(db: Kysely<any>) {
    await createTable(db)
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable(IDENTITY_CACHE_TABLE).ifExists().execute()
  },
}

async function createTable(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable(IDENTITY_CACHE_TABLE)
    .ifNotExists()
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('doc', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute()
}

/**
 * DID documents in a SQL table (`identity_did_cache`), so a restarted service keeps its identities.
 * Works on any kysely database (SQLite or PostgreSQL); `SqliteIdentityCache.open(path)` opens a SQLite
 * file (or ':memory:') and creates the table.
 */
export class SqliteIdentityCache implements IdentityCache {
  private readonly db: Kysely<IdentityCacheSchema>
  private readonly owned: Database<IdentityCacheSchema> | null

  constructor(db: Kysely<any>, owned: Database<IdentityCacheSchema> | null = null) {
    this.db = db as Kysely<IdentityCacheSchema>
    this.owned = owned
  }

  static async open(path: string): Promise<SqliteIdentityCache> {
    const database = openSqlite<IdentityCacheSchema>(path)
    const cache = new SqliteIdentityCache(database.db, database)
    await cache.ensureSchema()
    return cache
  }

  /** Creates the table if it does not exist. */
  async ensureSchema(): Promise<void> {
    await createTable(this.db)
  }

  async get(did: string): Promise<CachedDidDocument | null> {
    const row = await this.db
      .selectFrom(IDENTITY_CACHE_TABLE)
      .select(['doc', 'updated_at'])
      .where('did', '=', did)
      .executeTakeFirst()
    if (!row) return null
    let doc: DidDocument
    try {
      doc = JSON.parse(row.doc) as DidDocument
    } catch {
      return null
    }
    return { doc, updatedAt: Number(row.updated_at) }
  }

  async set(did: string, doc: DidDocument, updatedAt: number): Promise<void> {
    const json = JSON.stringify(doc)
    await this.db
      .insertInto(IDENTITY_CACHE_TABLE)
      .values({ did, doc: json, updated_at: updatedAt })
      .onConflict((oc) => oc.column('did').doUpdateSet({ doc: json, updated_at: updatedAt }))
      .execute()
  }

  async delete(did: string): Promise<void> {
    await this.db.deleteFrom(IDENTITY_CACHE_TABLE).where('did', '=', did).execute()
  }

  /** Deletes entries fetched before `olderThan` (ms since epoch); returns how many. */
  async prune(olderThan: number): Promise<number> {
    const res = await this.db.deleteFrom(IDENTITY_CACHE_TABLE).where('updated_at', '<', olderThan).executeTakeFirst()
    return Number(res.numDeletedRows)
  }

  async count(): Promise<number> {
    const row = await this.db
      .selectFrom(IDENTITY_CACHE_TABLE)
      .select(sql<number>`count(*)`.as('n'))
      .executeTakeFirstOrThrow()
    return Number(row.n)
  }

  /** Closes the database if this cache opened it (via `open`). */
  async close(): Promise<void> {
    await this.owned?.close()
  }
}
