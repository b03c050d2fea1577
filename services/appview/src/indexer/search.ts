/**
 * Full-text search, the one place where the two dialects differ: FTS5 virtual tables on SQLite,
 * tsvector columns with GIN indexes on PostgreSQL ('simple' configuration: no stemming, any language).
 */
import { sql, type Expression, type Kysely, type SqlBool } from 'kysely'
import type { DbDialect } from '@stratos/core/db'
import type { DatabaseSchema } from './schema.js'

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

  /** Many posts at once (one statement). */
  async setPosts(db: Db, posts: { uri: string; text: string }[]): Promise<void> {
    if (posts.length === 0) return
    if (this.dialect === 'postgres') {
      await sql`INSERT INTO post_fts (uri, tsv) VALUES ${sql.join(posts.map((p) => sql`(${p.uri}, to_tsvector('simple', ${p.text}))`))}`.execute(db)
    } else {
      await sql`INSERT INTO post_fts (uri, text) VALUES ${sql.join(posts.map((p) => sql`(${p.uri}, ${p.text})`))}`.execute(db)
    }
  }

  async deletePost(db: Db, uri: string): Promise<void> {
    await sql`DELETE FROM post_fts WHERE uri = ${uri}`.execute(db)
  }

  async setActor(db: Db, did: string, handle: string | null, displayName: string | null): Promise<void> {
    await sql`DELETE FROM actor_fts WHERE did = ${did}`.execute(db)
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
