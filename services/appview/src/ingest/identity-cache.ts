import type { Kysely } from 'kysely'
import type { CachedDidDocument, DidDocument, IdentityCache } from '@stratos/core/identity'
import type { DatabaseSchema } from '../indexer/schema.js'

/** DID documents cached in the AppView database (either dialect), so restarts keep them. */
export class DbIdentityCache implements IdentityCache {
  constructor(private readonly db: Kysely<DatabaseSchema>) {}

  async get(did: string): Promise<CachedDidDocument | null> {
    const row = await this.db.selectFrom('did_cache').select(['doc', 'updatedAt']).where('did', '=', did).executeTakeFirst()
    if (!row) return null
    try {
      return { doc: JSON.parse(row.doc) as DidDocument, updatedAt: Number(row.updatedAt) }
    } catch {
      return null
    }
  }

  async set(did: string, doc: DidDocument, updatedAt: number): Promise<void> {
    const json = JSON.stringify(doc)
    await this.db
      .insertInto('did_cache')
      .values({ did, doc: json, updatedAt })
      .onConflict((oc) => oc.column('did').doUpdateSet({ doc: json, updatedAt }))
      .execute()
  }

  async delete(did: string): Promise<void> {
    await this.db.deleteFrom('did_cache').where('did', '=', did).execute()
  }
}
