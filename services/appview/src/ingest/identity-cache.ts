import type { Kysely } from 'kysely'
import type { CachedDidDocument, DidDocument, IdentityCache } from '@stratos/core/identity'
import type { DatabaseSchema } from '../indexer/schema.js'

/**
 * DID documents cached in the AppView database (either dialect), so restarts keep them, with the
 * most recently used ones in memory too (live ingest looks one up for every commit; the same document
 * object comes back, so what is derived from it can be memoized per object).
 */
export class DbIdentityCache implements IdentityCache {
  private readonly memory = new Map<string, CachedDidDocument>()
  /**
   * Documents not written yet: they go to the database together, one transaction per `writeDelayMs`
   * (a backfill resolves thousands of new DIDs; one write transaction each cost more than the rest of
   * their handling). A document lost to a crash meanwhile is only fetched again.
   */
  private readonly unwritten = new Map<string, { doc: string; updatedAt: number }>()
  private writeTimer: NodeJS.Timeout | null = null
  private writing: Promise<void> = Promise.resolve()

  constructor(
    private readonly db: Kysely<DatabaseSchema>,
    private readonly memorySize = 50_000,
    private readonly writeDelayMs = 200,
  ) {}

  private remember(did: string, entry: CachedDidDocument): void {
    this.memory.delete(did)
    this.memory.set(did, entry)
    if (this.memory.size > this.memorySize) this.memory.delete(this.memory.keys().next().value!)
  }

  async get(did: string): Promise<CachedDidDocument | null> {
    const hit = this.memory.get(did)
    if (hit) return hit
    const u = this.unwritten.get(did)
    if (u) return { doc: JSON.parse(u.doc) as DidDocument, updatedAt: u.updatedAt }
    const entry = await this.load(did)
    if (entry) this.remember(did, entry)
    return entry
  }

  private async load(did: string): Promise<CachedDidDocument | null> {
    const row = await this.db.selectFrom('did_cache').select(['doc', 'updatedAt']).where('did', '=', did).executeTakeFirst()
    if (!row) return null
    try {
      return { doc: JSON.parse(row.doc) as DidDocument, updatedAt: Number(row.updatedAt) }
    } catch {
      return null
    }
  }

  async set(did: string, doc: DidDocument, updatedAt: number): Promise<void> {
    this.remember(did, { doc, updatedAt })
    this.unwritten.set(did, { doc: JSON.stringify(doc), updatedAt })
    if (this.writeDelayMs <= 0) return this.flush()
    if (!this.writeTimer) {
      this.writeTimer = setTimeout(() => void this.flush().catch(() => undefined), this.writeDelayMs)
      this.writeTimer.unref()
    }
  }

  /** Writes the documents cached since the last write (one transaction, multi-row upserts). */
  flush(): Promise<void> {
    if (this.writeTimer) clearTimeout(this.writeTimer)
    this.writeTimer = null
    if (this.unwritten.size === 0) return this.writing
    const rows = [...this.unwritten].map(([did, e]) => ({ did, doc: e.doc, updatedAt: e.updatedAt }))
    this.unwritten.clear()
    this.writing = this.writing.catch(() => undefined).then(() =>
      this.db.transaction().execute(async (tx) => {
        for (let i = 0; i < rows.length; i += 200) {
          await tx
            .insertInto('did_cache')
            .values(rows.slice(i, i + 200))
            .onConflict((oc) => oc.column('did').doUpdateSet((eb) => ({ doc: eb.ref('excluded.doc'), updatedAt: eb.ref('excluded.updatedAt') })))
            .execute()
        }
      }),
    )
    return this.writing
  }

  async delete(did: string): Promise<void> {
    this.memory.delete(did)
    this.unwritten.delete(did)
    await this.db.deleteFrom('did_cache').where('did', '=', did).execute()
  }
}
