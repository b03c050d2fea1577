/**
 * Migrations of the AppView database. The same migrations run on SQLite and PostgreSQL: everything is
 * built with kysely's schema builder in portable types (text, integer, bigint); only full-text search
 * differs (FTS5 virtual tables on SQLite, tsvector + GIN on PostgreSQL).
 */
import { sql, type Kysely, type Migration } from 'kysely'
import type { DbDialect, Migrations } from '@stratos/core/db'

type AnyDb = Kysely<any>

/** A table keyed by `uri` with the columns every record table has. */
function recordTable(db: AnyDb, name: string) {
  return db.schema
    .createTable(name)
    .addColumn('uri', 'text', (c) => c.primaryKey())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('creator', 'text', (c) => c.notNull())
}

async function init(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('actor')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('handle', 'text')
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .addColumn('upstreamStatus', 'text')
    .execute()
  await db.schema.createIndex('actor_handle_idx').on('actor').column('handle').execute()

  await db.schema
    .createTable('record')
    .addColumn('uri', 'text', (c) => c.primaryKey())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('collection', 'text', (c) => c.notNull())
    .addColumn('rkey', 'text', (c) => c.notNull())
    .addColumn('json', 'text', (c) => c.notNull())
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('record_did_collection_idx').on('record').columns(['did', 'collection']).execute()

  await recordTable(db, 'profile')
    .addColumn('displayName', 'text')
    .addColumn('description', 'text')
    .addColumn('avatarCid', 'text')
    .addColumn('bannerCid', 'text')
    .addColumn('pinnedPostUri', 'text')
    .addColumn('pinnedPostCid', 'text')
    .addColumn('joinedViaStarterPackUri', 'text')
    .addColumn('createdAt', 'text')
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('profile_creator_idx').on('profile').column('creator').execute()

  await recordTable(db, 'post')
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('replyRoot', 'text')
    .addColumn('replyRootCid', 'text')
    .addColumn('replyParent', 'text')
    .addColumn('replyParentCid', 'text')
    .addColumn('quoteUri', 'text')
    .addColumn('quoteCid', 'text')
    .addColumn('embedType', 'text')
    .addColumn('hasMedia', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('hasVideo', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('langs', 'text')
    .addColumn('violatesThreadGate', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('violatesEmbeddingRules', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('createdAt', 'text', (c) => c.notNull())
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .addColumn('sortAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('post_creator_sort_idx').on('post').columns(['creator', 'sortAt']).execute()
  await db.schema.createIndex('post_reply_parent_idx').on('post').column('replyParent').execute()
  await db.schema.createIndex('post_reply_root_idx').on('post').column('replyRoot').execute()
  await db.schema.createIndex('post_quote_idx').on('post').columns(['quoteUri', 'sortAt']).execute()
  await db.schema.createIndex('post_sort_idx').on('post').column('sortAt').execute()

  await db.schema
    .createTable('feed_item')
    .addColumn('uri', 'text', (c) => c.primaryKey())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('postUri', 'text', (c) => c.notNull())
    .addColumn('originatorDid', 'text', (c) => c.notNull())
    .addColumn('sortAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('feed_item_originator_idx').on('feed_item').columns(['originatorDid', 'sortAt']).execute()
  await db.schema.createIndex('feed_item_post_idx').on('feed_item').column('postUri').execute()

  for (const name of ['like', 'repost']) {
    await recordTable(db, name)
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('subjectCid', 'text', (c) => c.notNull())
      .addColumn('createdAt', 'text', (c) => c.notNull())
      .addColumn('indexedAt', 'text', (c) => c.notNull())
      .addColumn('sortAt', 'text', (c) => c.notNull())
      .addUniqueConstraint(`${name}_unique_subject`, ['creator', 'subject'])
      .execute()
    await db.schema.createIndex(`${name}_subject_idx`).on(name).columns(['subject', 'sortAt']).execute()
    await db.schema.createIndex(`${name}_creator_idx`).on(name).columns(['creator', 'sortAt']).execute()
  }

  for (const name of ['follow', 'block']) {
    await recordTable(db, name)
      .addColumn('subjectDid', 'text', (c) => c.notNull())
      .addColumn('createdAt', 'text', (c) => c.notNull())
      .addColumn('indexedAt', 'text', (c) => c.notNull())
      .addColumn('sortAt', 'text', (c) => c.notNull())
      .addUniqueConstraint(`${name}_unique_subject`, ['creator', 'subjectDid'])
      .execute()
    await db.schema.createIndex(`${name}_subject_idx`).on(name).columns(['subjectDid', 'sortAt']).execute()
    await db.schema.createIndex(`${name}_creator_idx`).on(name).columns(['creator', 'sortAt']).execute()
  }

  await recordTable(db, 'list')
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('purpose', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('avatarCid', 'text')
    .addColumn('createdAt', 'text', (c) => c.notNull())
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .addColumn('sortAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('list_creator_idx').on('list').columns(['creator', 'sortAt']).execute()

  await recordTable(db, 'list_item')
    .addColumn('listUri', 'text', (c) => c.notNull())
    .addColumn('subjectDid', 'text', (c) => c.notNull())
    .addColumn('createdAt', 'text', (c) => c.notNull())
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .addColumn('sortAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('list_item_list_idx').on('list_item').columns(['listUri', 'sortAt']).execute()
  await db.schema.createIndex('list_item_subject_idx').on('list_item').columns(['subjectDid', 'listUri']).execute()

  await recordTable(db, 'list_block')
    .addColumn('subjectUri', 'text', (c) => c.notNull())
    .addColumn('createdAt', 'text', (c) => c.notNull())
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .addColumn('sortAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('list_block_creator_idx').on('list_block').columns(['creator', 'sortAt']).execute()
  await db.schema.createIndex('list_block_subject_idx').on('list_block').column('subjectUri').execute()

  await recordTable(db, 'feed_generator')
    .addColumn('feedDid', 'text', (c) => c.notNull())
    .addColumn('displayName', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('avatarCid', 'text')
    .addColumn('createdAt', 'text', (c) => c.notNull())
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .addColumn('sortAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('feed_generator_creator_idx').on('feed_generator').columns(['creator', 'sortAt']).execute()

  for (const name of ['threadgate', 'postgate']) {
    await recordTable(db, name)
      .addColumn('postUri', 'text', (c) => c.notNull())
      .addColumn('createdAt', 'text', (c) => c.notNull())
      .addColumn('indexedAt', 'text', (c) => c.notNull())
      .execute()
    await db.schema.createIndex(`${name}_post_idx`).on(name).column('postUri').execute()
  }

  await recordTable(db, 'starter_pack')
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('listUri', 'text', (c) => c.notNull())
    .addColumn('createdAt', 'text', (c) => c.notNull())
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .addColumn('sortAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('starter_pack_creator_idx').on('starter_pack').columns(['creator', 'sortAt']).execute()

  await db.schema
    .createTable('record_agg')
    .addColumn('uri', 'text', (c) => c.primaryKey())
    .addColumn('likeCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('repostCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('replyCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('quoteCount', 'integer', (c) => c.notNull().defaultTo(0))
    .execute()
  await db.schema
    .createTable('profile_agg')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('followersCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('followsCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('postsCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('listsCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('feedgensCount', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('starterPacksCount', 'integer', (c) => c.notNull().defaultTo(0))
    .execute()
  await db.schema
    .createTable('list_agg')
    .addColumn('uri', 'text', (c) => c.primaryKey())
    .addColumn('itemCount', 'integer', (c) => c.notNull().defaultTo(0))
    .execute()

  await db.schema
    .createTable('notification')
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('author', 'text', (c) => c.notNull())
    .addColumn('recordUri', 'text', (c) => c.notNull())
    .addColumn('recordCid', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('reasonSubject', 'text')
    .addColumn('sortAt', 'text', (c) => c.notNull())
    .addColumn('indexedAt', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('notification_pkey', ['did', 'recordUri', 'reason'])
    .execute()
  await db.schema.createIndex('notification_did_sort_idx').on('notification').columns(['did', 'sortAt']).execute()
  await db.schema.createIndex('notification_record_idx').on('notification').column('recordUri').execute()

  await db.schema
    .createTable('actor_state')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('lastSeenNotifs', 'text')
    .execute()
  await db.schema
    .createTable('mute')
    .addColumn('mutedByDid', 'text', (c) => c.notNull())
    .addColumn('subjectDid', 'text', (c) => c.notNull())
    .addColumn('createdAt', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('mute_pkey', ['mutedByDid', 'subjectDid'])
    .execute()
  await db.schema
    .createTable('list_mute')
    .addColumn('mutedByDid', 'text', (c) => c.notNull())
    .addColumn('listUri', 'text', (c) => c.notNull())
    .addColumn('createdAt', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('list_mute_pkey', ['mutedByDid', 'listUri'])
    .execute()

  await db.schema
    .createTable('repo_state')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('rev', 'text', (c) => c.notNull())
    .addColumn('data', 'text', (c) => c.notNull())
    .addColumn('commitCid', 'text', (c) => c.notNull())
    .addColumn('syncStatus', 'text', (c) => c.notNull())
    .addColumn('updatedAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema
    .createTable('ingest_cursor')
    .addColumn('source', 'text', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('updatedAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema
    .createTable('did_cache')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('doc', 'text', (c) => c.notNull())
    .addColumn('updatedAt', 'bigint', (c) => c.notNull())
    .execute()
}

async function ftsSqlite(db: AnyDb): Promise<void> {
  await sql`CREATE VIRTUAL TABLE post_fts USING fts5(uri UNINDEXED, text, tokenize = 'unicode61 remove_diacritics 2')`.execute(db)
  await sql`CREATE VIRTUAL TABLE actor_fts USING fts5(did UNINDEXED, handle, "displayName", tokenize = 'unicode61 remove_diacritics 2')`.execute(
    db,
  )
}

async function ftsPostgres(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('post_fts')
    .addColumn('uri', 'text', (c) => c.primaryKey())
    .addColumn('tsv', sql`tsvector`, (c) => c.notNull())
    .execute()
  await sql`CREATE INDEX post_fts_tsv_idx ON post_fts USING gin (tsv)`.execute(db)
  await db.schema
    .createTable('actor_fts')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('handle', 'text', (c) => c.notNull())
    .addColumn('displayName', 'text', (c) => c.notNull())
    .addColumn('tsv', sql`tsvector`, (c) => c.notNull())
    .execute()
  await sql`CREATE INDEX actor_fts_tsv_idx ON actor_fts USING gin (tsv)`.execute(db)
}

async function labels(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('label')
    .addColumn('src', 'text', (c) => c.notNull())
    .addColumn('uri', 'text', (c) => c.notNull())
    .addColumn('cid', 'text')
    .addColumn('val', 'text', (c) => c.notNull())
    .addColumn('cts', 'text', (c) => c.notNull())
    .addColumn('exp', 'text')
    .addColumn('sig', 'text')
    .addPrimaryKeyConstraint('label_pkey', ['src', 'uri', 'val'])
    .execute()
  await db.schema.createIndex('label_uri_idx').on('label').column('uri').execute()
  await db.schema
    .createTable('labeler_cursor')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('updatedAt', 'text', (c) => c.notNull())
    .execute()
}

async function backfill(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('backfill_source')
    .addColumn('source', 'text', (c) => c.primaryKey())
    .addColumn('cursor', 'text')
    .addColumn('listed', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('startedAt', 'text', (c) => c.notNull())
    .addColumn('finishedAt', 'text')
    .execute()
  await db.schema
    .createTable('backfill_repo')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('rev', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('error', 'text')
    .addColumn('updatedAt', 'text', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('backfill_repo_status_idx').on('backfill_repo').columns(['status', 'did']).execute()
}

/**
 * SQLite: where each search entry sits in its FTS5 table (its rowid), by key, so that replacing or deleting
 * an entry is a lookup and not a scan of the table by its UNINDEXED did / uri column. Filled from the
 * entries there are (one scan; an account or post with more than one entry keeps its newest).
 */
async function searchRowidsSqlite(db: AnyDb): Promise<void> {
  for (const [fts, key] of [
    ['actor_fts', 'did'],
    ['post_fts', 'uri'],
  ] as const) {
    await sql.raw(`CREATE TABLE ${fts}_rowid ("${key}" text PRIMARY KEY, "id" integer NOT NULL) WITHOUT ROWID`).execute(db)
    await sql.raw(`INSERT INTO ${fts}_rowid ("${key}", "id") SELECT ${key}, max(rowid) FROM ${fts} GROUP BY ${key}`).execute(db)
    await sql.raw(`DELETE FROM ${fts} WHERE rowid NOT IN (SELECT "id" FROM ${fts}_rowid)`).execute(db)
  }
}

/** author_latest's trigger statements: a feed item (NEW) raises its account's time when newer. */
const AUTHOR_LATEST_RAISE = `INSERT INTO author_latest (did, "sortAt") VALUES (NEW."originatorDid", NEW."sortAt")
      ON CONFLICT (did) DO UPDATE SET "sortAt" = excluded."sortAt" WHERE excluded."sortAt" > author_latest."sortAt"`
/** ... and a feed item gone (OLD) that was its account's newest: the next newest is read, or the row dropped. */
const AUTHOR_LATEST_DROP = [
  `DELETE FROM author_latest WHERE did = OLD."originatorDid" AND "sortAt" <= OLD."sortAt"
      AND NOT EXISTS (SELECT 1 FROM feed_item WHERE "originatorDid" = OLD."originatorDid")`,
  `UPDATE author_latest SET "sortAt" = (SELECT max("sortAt") FROM feed_item WHERE "originatorDid" = OLD."originatorDid")
      WHERE did = OLD."originatorDid" AND "sortAt" <= OLD."sortAt"`,
]

/**
 * Each account's newest feed item time (author_latest), kept by triggers on feed_item: the timeline's first
 * step reads one small row per followed account instead of seeking each account's newest entry in
 * feed_item_originator_idx (an index of every feed item): 1,000 follows, ~1.1 -> ~0.5 ms. An insert raises the
 * time when newer; a delete of an account's newest item reads the next newest (one index seek), or drops the
 * row when the account has no item left. feed_item is only ever inserted into (ON CONFLICT DO NOTHING: no
 * trigger when nothing is inserted) and deleted from; its rows are not updated.
 */
async function authorLatest(db: AnyDb, dialect: DbDialect): Promise<void> {
  const upsert = AUTHOR_LATEST_RAISE
  const onDelete = AUTHOR_LATEST_DROP
  await sql.raw(`CREATE TABLE author_latest (did text PRIMARY KEY, "sortAt" text NOT NULL)${dialect === 'sqlite' ? ' WITHOUT ROWID' : ''}`).execute(db)
  await sql.raw(`INSERT INTO author_latest (did, "sortAt") SELECT "originatorDid", max("sortAt") FROM feed_item GROUP BY "originatorDid"`).execute(db)
  if (dialect === 'sqlite') {
    await sql.raw(`CREATE TRIGGER author_latest_insert AFTER INSERT ON feed_item BEGIN ${upsert}; END`).execute(db)
    await sql.raw(`CREATE TRIGGER author_latest_delete AFTER DELETE ON feed_item BEGIN ${onDelete.join('; ')}; END`).execute(db)
    return
  }
  await sql.raw(`CREATE FUNCTION author_latest_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${upsert}; RETURN NULL; END $$`).execute(db)
  await sql.raw(`CREATE TRIGGER author_latest_insert AFTER INSERT ON feed_item FOR EACH ROW EXECUTE FUNCTION author_latest_insert()`).execute(db)
  await sql.raw(`CREATE FUNCTION author_latest_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${onDelete.join('; ')}; RETURN NULL; END $$`).execute(db)
  await sql.raw(`CREATE TRIGGER author_latest_delete AFTER DELETE ON feed_item FOR EACH ROW EXECUTE FUNCTION author_latest_delete()`).execute(db)
}

/**
 * author_latest also follows an UPDATE of a feed item's time or account (the indexer does not update feed
 * items today: a later writer that does keeps the table right): the old account's time is read again when the
 * item was its newest, the new account's raised when the item is newer.
 */
async function authorLatestOnUpdate(db: AnyDb, dialect: DbDialect): Promise<void> {
  const body = [...AUTHOR_LATEST_DROP, AUTHOR_LATEST_RAISE].join('; ')
  if (dialect === 'sqlite') {
    await sql.raw(`CREATE TRIGGER author_latest_update AFTER UPDATE OF "sortAt", "originatorDid" ON feed_item BEGIN ${body}; END`).execute(db)
    return
  }
  await sql.raw(`CREATE FUNCTION author_latest_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${body}; RETURN NULL; END $$`).execute(db)
  await sql.raw(`CREATE TRIGGER author_latest_update AFTER UPDATE OF "sortAt", "originatorDid" ON feed_item FOR EACH ROW EXECUTE FUNCTION author_latest_update()`).execute(db)
}

/**
 * A thread's replies read from one index: the replies of a post in time order with every column the thread
 * reads of them (getPostThread's REPLIES_SQL: URI and head), so a level of 200 replies is one range of
 * index entries instead of 200 lookups of the post's row (a large row: the text) by rowid, each a B-tree
 * descent of the whole table. Only replies have an entry (most posts are not replies). At the 1M-record
 * bench size, the two reply levels of the 200-reply thread: ~830 -> ~620 µs of CPU (one thread, cache off).
 * (post_reply_parent_idx, which nothing but the thread read, goes in 009.)
 */
async function threadRepliesIndex(db: AnyDb): Promise<void> {
  await sql
    .raw(
      `CREATE INDEX post_reply_parent_cover_idx ON post ("replyParent", "sortAt", uri, cid, "indexedAt", "violatesThreadGate", "violatesEmbeddingRules") WHERE "replyParent" IS NOT NULL`,
    )
    .execute(db)
}

/**
 * Post indexes without the posts that have no value in them: most posts are neither replies nor quotes,
 * and each kept a NULL entry in post_reply_parent_idx, post_reply_root_idx and post_quote_idx (three B-tree
 * writes per post for nothing). post_reply_root_idx and post_quote_idx become partial (WHERE the column IS
 * NOT NULL: a lookup `x = ?`, or a join on it, implies it, so it still uses the index, SQLite and
 * PostgreSQL); post_reply_parent_idx goes, post_reply_parent_cover_idx (008) leads with the same column and
 * serves every read by replyParent (the thread's replies).
 */
async function partialPostIndexes(db: AnyDb): Promise<void> {
  await sql.raw('DROP INDEX post_reply_parent_idx').execute(db)
  for (const [name, columns] of [
    ['post_reply_root_idx', ['replyRoot']],
    ['post_quote_idx', ['quoteUri', 'sortAt']],
  ] as const) {
    await sql.raw(`DROP INDEX ${name}`).execute(db)
    await sql.raw(`CREATE INDEX ${name} ON post (${columns.map((c) => `"${c}"`).join(', ')}) WHERE "${columns[0]}" IS NOT NULL`).execute(db)
  }
}

/**
 * SQLite: the count tables (record_agg, profile_agg, list_agg: a text key and a few integers) become WITHOUT
 * ROWID tables: a rowid table keyed by text is two B-trees (the rows by rowid, and the unique index of the
 * key), read twice per lookup by key (every count a view shows) and written twice per new row; WITHOUT
 * ROWID stores the rows in the key's B-tree. Each table is rebuilt (create, copy in key order, drop,
 * rename) with the same columns, constraints, indexes and triggers (rebuildWithoutRowid).
 *
 * Not the record tables with secondary indexes (like, repost, follow, block, feed_item), measured at the
 * 1M-record bench size: their secondary indexes then end with the uri (~70 bytes) instead of the rowid,
 * and a new row lands at its uri's place in the table instead of being appended; 36-row transactions of
 * likes, follows and feed items from random accounts wrote 31.4 KB of WAL per row instead of 25.9 (+20 %)
 * at +10-20 % CPU, 2,000-row transactions of one account's rows +15 % WAL at the same CPU.
 */
export const WITHOUT_ROWID_TABLES = ['record_agg', 'profile_agg', 'list_agg'] as const

async function withoutRowidSqlite(db: AnyDb): Promise<void> {
  for (const table of WITHOUT_ROWID_TABLES) await rebuildWithoutRowid(db, table)
}

/** Rebuilds `table` (SQLite) as a WITHOUT ROWID table keyed by its primary key. */
export async function rebuildWithoutRowid(db: AnyDb, table: string): Promise<void> {
  const objects = (
    await sql<{ type: string; name: string; sql: string | null }>`SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ${table}`.execute(db)
  ).rows
  const create = objects.find((o) => o.type === 'table')?.sql
  if (!create) throw new Error(`no table ${table}`)
  if (/\)\s*WITHOUT\s+ROWID\s*$/i.test(create)) return
  const temp = `${table}__rebuild`
  // the statement as it was created, under another name (the name is the first identifier after TABLE)
  const head = /^CREATE\s+TABLE\s+("[^"]+"|\S+)/i
  if (!head.test(create)) throw new Error(`unexpected DDL of ${table}: ${create}`)
  await sql.raw(`${create.replace(head, `CREATE TABLE "${temp}"`)} WITHOUT ROWID`).execute(db)
  const key = (await sql<{ name: string; pk: number }>`SELECT name, pk FROM pragma_table_info(${table}) WHERE pk > 0 ORDER BY pk`.execute(db)).rows
  if (key.length === 0) throw new Error(`${table} has no primary key`)
  await sql.raw(`INSERT INTO "${temp}" SELECT * FROM "${table}" ORDER BY ${key.map((k) => `"${k.name}"`).join(', ')}`).execute(db)
  await sql.raw(`DROP TABLE "${table}"`).execute(db)
  await sql.raw(`ALTER TABLE "${temp}" RENAME TO "${table}"`).execute(db)
  // indexes (not the automatic ones of the constraints, which the new table has) and triggers, as they were
  for (const o of objects) if (o.type === 'index' && o.sql) await sql.raw(o.sql).execute(db)
  for (const o of objects) if (o.type === 'trigger' && o.sql) await sql.raw(o.sql).execute(db)
}

/**
 * feed_item_post_idx goes: no statement reads feed items by postUri (feeds read them by originatorDid,
 * deletes by uri), and every post and repost wrote an entry at a random place in it (EXPLAIN QUERY PLAN of
 * every statement the AppView tests prepare: only a count(*) chose it, as the smallest index).
 */
async function dropFeedItemPostIndex(db: AnyDb): Promise<void> {
  await sql.raw('DROP INDEX feed_item_post_idx').execute(db)
}

/**
 * The labeler service records in an index of their own: the label subscriptions look up every account
 * that has one (labelerDidsQuery, each refresh), and no other index leads with the collection. Partial, so
 * it holds only those few records and the other records' writes do not touch it.
 */
async function labelerRecordIndex(db: AnyDb): Promise<void> {
  await sql.raw(`CREATE INDEX record_labeler_idx ON record (did) WHERE collection = 'app.bsky.labeler.service'`).execute(db)
}

/**
 * SQLite: record_did_collection_idx goes. Every record wrote an entry in it (58 MB at the 1M-record bench
 * size), and its readers need no index of their own: a record's URI is at://did/collection/rkey, so an
 * account's records are one range of the record table's URI key (the resync's: recordsOfDid in
 * ingester.ts), and a labeler service record (rkey self) is one URI (the hydrator's actorCounts,
 * getServices). PostgreSQL keeps it: its text keys sort by the database's collation, in which an account's
 * URIs need not be one range.
 */
async function dropRecordDidCollectionIndex(db: AnyDb, dialect: DbDialect): Promise<void> {
  if (dialect === 'sqlite') await sql.raw('DROP INDEX record_did_collection_idx').execute(db)
}

/**
 * post_sort_idx and repost_creator_idx go: no statement reads them (EXPLAIN QUERY PLAN of every statement
 * the AppView tests prepare, on the 1M-record snapshot: only a count(*) chose post_sort_idx, as the
 * smallest index; search reads posts by their full-text entries, an author's posts by
 * post_creator_sort_idx, a viewer's reposts by the (creator, subject) unique index). Every post and every
 * repost wrote an entry in them.
 */
async function dropUnreadIndexes(db: AnyDb): Promise<void> {
  await sql.raw('DROP INDEX post_sort_idx').execute(db)
  await sql.raw('DROP INDEX repost_creator_idx').execute(db)
}

/** The migrations for one dialect (the same tables; full-text search built the dialect's way). */
export function appviewMigrations(dialect: DbDialect): Migrations {
  const migrations: Record<string, Migration> = {
    '001-init': { up: init },
    '002-search': { up: dialect === 'postgres' ? ftsPostgres : ftsSqlite },
    '003-labels': { up: labels },
    '004-backfill': { up: backfill },
    // (PostgreSQL's search tables are keyed by did / uri already)
    '005-search-rowids': { up: dialect === 'postgres' ? async () => undefined : searchRowidsSqlite },
    '006-author-latest': { up: (db) => authorLatest(db, dialect) },
    '007-author-latest-update': { up: (db) => authorLatestOnUpdate(db, dialect) },
    '008-thread-replies-index': { up: threadRepliesIndex },
    '009-partial-post-indexes': { up: partialPostIndexes },
    // (PostgreSQL has no rowid tables)
    '010-without-rowid': { up: dialect === 'postgres' ? async () => undefined : withoutRowidSqlite },
    '011-drop-feed-item-post-idx': { up: dropFeedItemPostIndex },
    '012-labeler-record-index': { up: labelerRecordIndex },
    '013-drop-record-did-collection-idx': { up: (db) => dropRecordDidCollectionIndex(db, dialect) },
    '014-drop-unread-indexes': { up: dropUnreadIndexes },
  }
  return migrations
}
