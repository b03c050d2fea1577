/**
 * Full-text search, the one place where the two dialects differ: FTS5 virtual tables on SQLite,
 * tsvector columns with GIN indexes on PostgreSQL ('simple' configuration: no stemming, any language).
 */
import { sql, type Expression, type Kysely, type SqlBool } from 'kysely'
import type { DbDialect } from '@stratos/core/db'
import type { DatabaseSchema } from './schema.js'
import { insertRows } from './bulk.js'

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
    if (this.dialect === 'postgres') {
      await sql`INSERT INTO post_fts (uri, tsv) VALUES (${uri}, to_tsvector('simple', ${text}))`.execute(db)
    } else {
      await sql`INSERT INTO post_fts (uri, text) VALUES (${uri}, ${text})`.execute(db)
    }
  }

  /** Many posts at once (multi-row statements). */
  async setPosts(db: Db, posts: { uri: string; text: string }[]): Promise<void> {
    if (posts.length === 0) return
    if (this.dialect === 'postgres') {
      await insertRows(db, 'postgres', { table: 'post_fts', columns: ['uri', 'tsv'], exprs: { tsv: "to_tsvector('simple', {})" } }, posts.map((p) => ({ uri: p.uri, tsv: p.text })))
    } else {
      await insertRows(db, 'sqlite', { table: 'post_fts', columns: ['uri', 'text'] }, posts)
    }
  }

  async deletePost(db: Db, uri: string): Promise<void> {
    await sql`DELETE FROM post_fts WHERE uri = ${uri}`.execute(db)
  }

  /**
   * The actor's search entry. `fresh`: the actor was created just now and has none yet (the DELETE by
   * the FTS5 table's UNINDEXED did column scans the whole table on SQLite: skipped for new accounts).
   */
  async setActor(db: Db, did: string, handle: string | null, displayName: string | null, opts: { fresh?: boolean } = {}): Promise<void> {
    if (!opts.fresh) await sql`DELETE FROM actor_fts WHERE did = ${did}`.execute(db)
    const h = handle ?? ''
    const name = displayName ?? ''
    if (this.dialect === 'postgres') {
      await sql`INSERT INTO actor_fts (did, handle, "displayName", tsv)
        VALUES (${did}, ${h}, ${name}, to_tsvector('simple', ${actorText(h, name)}))`.execute(db)
    } else {
      await sql`INSERT INTO actor_fts (did, handle, "displayName") VALUES (${did}, ${h}, ${name})`.execute(db)
    }
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
