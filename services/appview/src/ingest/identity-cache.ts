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

  constructor(
    private readonly db: Kysely<DatabaseSchema>,
    private readonly memorySize = 50_000,
  ) {}

  private remember(did: string, entry: CachedDidDocument): void {
    this.memory.delete(did)
    this.memory.set(did, entry)
    if (this.memory.size > this.memorySize) this.memory.delete(this.memory.keys().next().value!)
  }

  async get(did: string): Promise<CachedDidDocument | null> {
    const hit = this.memory.get(did)
    if (hit) return hit
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
    const json = JSON.stringify(doc)
    await this.db
      .insertInto('did_cache')
      .values({ did, doc: json, updatedAt })
      .onConflict((oc) => oc.column('did').doUpdateSet({ doc: json, updatedAt }))
      .execute()
  }

  async delete(did: string): Promise<void> {
    this.memory.delete(did)
    await this.db.deleteFrom('did_cache').where('did', '=', did).execute()
  }
}
