/**
 * Full-text search, the one place where the two dialects differ: FTS5 virtual tables on SQLite,
 * tsvector columns with GIN indexes on PostgreSQL ('simple' configuration: no stemming, any language).
 */
import { sql, type Expression, type Kysely, type SqlBool } from 'kysely'
import type { DbDialect } from '@stratos/core/db'
import type { DatabaseSchema } from './schema.js'
import { insertRows, runQuery, type InsertShape } from './bulk.js'

type Db = Kysely<DatabaseSchema>

/** Lowercased word tokens of a query (letters, digits, underscore), at most 16. */
export function searchTokens(q: string): string[] {
  return (q.toLowerCase().match(/[\p{L}\p{N}_]+/gu) ?? []).slice(0, 16)
}

/** FTS5 MATCH expression: every token, quoted (so no FTS syntax gets through); `prefix` on the last. */
export function fts5Query(tokens: string[], prefix = false): string {
  return tokens.map((t, i) => `"${t}"${prefix && i === tokens.length - 1 ? '*' : ''}`).join(' ')
}

/** to_tsquery text: tokens joined with &, `:*` on the last for prefix search. Tokens are word chars only. */
export function tsQuery(tokens: string[], prefix = false): string {
  return tokens.map((t, i) => `${t}${prefix && i === tokens.length - 1 ? ':*' : ''}`).join(' & ')
}

/** The searchable text of an actor: handle, handle split at dots, display name. */
function actorText(handle: string, displayName: string): string {
  return `${handle} ${handle.replace(/\./g, ' ')} ${displayName}`
}

export class Search {
  constructor(readonly dialect: DbDialect) {}

  async setPost(db: Db, uri: string, text: string): Promise<void> {
    await this.deletePost(db, uri)
    await this.setPosts(db, [{ uri, text }])
  }

  /**
   * Many posts at once (multi-row statements), none of which has an entry yet. On SQLite each entry's
   * FTS5 rowid is chosen here (after the highest in use) and kept in post_fts_rowid, so that deletePost
   * finds it by key: a DELETE by the FTS5 table's UNINDEXED uri column would scan the whole table.
   */
  async setPosts(db: Db, posts: { uri: string; text: string }[]): Promise<void> {
    if (posts.length === 0) return
    if (this.dialect === 'postgres') {
      await insertRows(db, 'postgres', { table: 'post_fts', columns: ['uri', 'tsv'], exprs: { tsv: "to_tsvector('simple', {})" } }, posts.map((p) => ({ uri: p.uri, tsv: p.text })))
      return
    }
    const [top] = await runQuery<{ id: number }>(db, 'sqlite', 'SELECT rowid AS "id" FROM post_fts ORDER BY rowid DESC LIMIT 1', [])
    let id = Number(top?.id ?? 0)
    const rows = posts.map((p) => ({ rowid: ++id, uri: p.uri, text: p.text }))
    await insertRows(db, 'sqlite', POST_FTS_INSERT, rows)
    await insertRows(db, 'sqlite', POST_FTS_ROWID_UPSERT, rows.map((r) => ({ uri: r.uri, id: r.rowid })))
  }

  async deletePost(db: Db, uri: string): Promise<void> {
    if (this.dialect === 'postgres') {
      await sql`DELETE FROM post_fts WHERE uri = ${uri}`.execute(db)
      return
    }
    await runQuery(db, 'sqlite', 'DELETE FROM post_fts WHERE rowid IN (SELECT "id" FROM post_fts_rowid WHERE "uri" = ?)', [uri])
    await runQuery(db, 'sqlite', 'DELETE FROM post_fts_rowid WHERE "uri" = ?', [uri])
  }

  /**
   * The actor's search entry. `fresh`: the actor was created just now and has none yet (no delete). On
   * SQLite the entry's FTS5 rowid is kept in actor_fts_rowid, so the old entry is deleted by rowid (by the
   * UNINDEXED did column it would be a scan of the whole table).
   */
  async setActor(db: Db, did: string, handle: string | null, displayName: string | null, opts: { fresh?: boolean } = {}): Promise<void> {
    const h = handle ?? ''
    const name = displayName ?? ''
    if (this.dialect === 'postgres') {
      if (!opts.fresh) await sql`DELETE FROM actor_fts WHERE did = ${did}`.execute(db)
      await sql`INSERT INTO actor_fts (did, handle, "displayName", tsv)
        VALUES (${did}, ${h}, ${name}, to_tsvector('simple', ${actorText(h, name)}))`.execute(db)
      return
    }
    if (!opts.fresh) await runQuery(db, 'sqlite', 'DELETE FROM actor_fts WHERE rowid IN (SELECT "id" FROM actor_fts_rowid WHERE "did" = ?)', [did])
    await runQuery(db, 'sqlite', 'INSERT INTO actor_fts (did, handle, "displayName") VALUES (?, ?, ?)', [did, h, name])
    // (the rowid the FTS5 insert just took)
    await runQuery(db, 'sqlite', 'INSERT INTO actor_fts_rowid ("did", "id") VALUES (?, last_insert_rowid()) ON CONFLICT ("did") DO UPDATE SET "id" = excluded."id"', [did])
  }

  /** A condition on `post.uri`: the post's text matches every token. */
  postMatches(tokens: string[]): Expression<SqlBool> {
    if (this.dialect === 'postgres') {
      return sql<SqlBool>`post.uri IN (SELECT uri FROM post_fts WHERE tsv @@ to_tsquery('simple', ${tsQuery(tokens)}))`
    }
    return sql<SqlBool>`post.uri IN (SELECT uri FROM post_fts WHERE post_fts MATCH ${fts5Query(tokens)})`
  }

  /** A condition on `actor.did`: handle or display name matches the tokens (the last one as a prefix). */
  actorMatches(tokens: string[], prefix: boolean): Expression<SqlBool> {
    if (this.dialect === 'postgres') {
      return sql<SqlBool>`actor.did IN (SELECT did FROM actor_fts WHERE tsv @@ to_tsquery('simple', ${tsQuery(tokens, prefix)}))`
    }
    return sql<SqlBool>`actor.did IN (SELECT did FROM actor_fts WHERE actor_fts MATCH ${fts5Query(tokens, prefix)})`
  }
}

/** SQLite: post entries with the rowids setPosts chose */
const POST_FTS_INSERT: InsertShape = { table: 'post_fts', columns: ['rowid', 'uri', 'text'] }
const POST_FTS_ROWID_UPSERT: InsertShape = { table: 'post_fts_rowid', columns: ['uri', 'id'], tail: 'ON CONFLICT ("uri") DO UPDATE SET "id" = excluded."id"' }
