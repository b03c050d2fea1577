/**
 * Migrations 009 (post_reply_root_idx and post_quote_idx partial: WHERE the column IS NOT NULL;
 * post_reply_parent_idx dropped, post_reply_parent_cover_idx serves its reads) and 010 (SQLite: record_agg,
 * profile_agg, list_agg rebuilt as WITHOUT ROWID tables) and 011 (feed_item_post_idx dropped) and 012
 * (record_labeler_idx: the labeler service records, for the label subscriptions' lookup) and 013 (SQLite:
 * record_did_collection_idx dropped, an account's records read as a range of URIs) and 014 (post_sort_idx and
 * repost_creator_idx dropped: nothing reads them) on a database
 * written by the earlier schema: the same rows and the same answers after, the reply / quote lookups still
 * served by their indexes, and writes after the migration keep the counts. On SQLite, and on PostgreSQL when
 * STRATOS_TEST_PG_URL is set.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { sql } from 'kysely'
import { cidForCbor, jsonToLex } from '@stratos/core/data'
import { migrateToLatest, openPostgres, openSqlite, type Database } from '@stratos/core/db'
import { appviewMigrations } from '../src/indexer/migrations.js'
import { runQuery } from '../src/indexer/bulk.js'
import { recordsOfDid } from '../src/ingest/ingester.js'
import { LABELER_COLLECTION, labelerDidsQuery } from '../src/labels/subscriber.js'
import { Indexer } from '../src/indexer/indexer.js'
import type { DatabaseSchema } from '../src/indexer/schema.js'
import { FakeNetwork, PG_URL, agentFor, startAppView, testDb, type TestDb } from './helpers.js'

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']
const NEW_MIGRATIONS = ['009-partial-post-indexes', '010-without-rowid', '011-drop-feed-item-post-idx', '012-labeler-record-index', '013-drop-record-did-collection-idx', '014-drop-unread-indexes']

async function open(db: TestDb): Promise<Database<DatabaseSchema>> {
  return db.dialect === 'postgres' ? openPostgres<DatabaseSchema>(db.dbUrl, { schema: db.dbSchema! }) : openSqlite<DatabaseSchema>(db.dbUrl)
}

const did = (n: number) => `did:plc:${`mig${n}`.padEnd(24, 'a')}`

async function index(indexer: Indexer, author: string, collection: string, rkey: string, record: Record<string, unknown>) {
  const full = { $type: collection, ...record }
  const ref = { uri: `at://${author}/${collection}/${rkey}`, cid: cidForCbor(jsonToLex(full)).toString() }
  await indexer.indexOne(ref.uri, ref.cid, full)
  return ref
}

/** What the reads depend on, in a fixed order. */
async function dump(database: Database<DatabaseSchema>, root: string) {
  const db = database.db
  return {
    recordAgg: await db.selectFrom('record_agg').selectAll().orderBy('uri').execute(),
    profileAgg: await db.selectFrom('profile_agg').selectAll().orderBy('did').execute(),
    listAgg: await db.selectFrom('list_agg').selectAll().orderBy('uri').execute(),
    replies: await db.selectFrom('post').select('uri').where('replyParent', '=', root).orderBy('sortAt').orderBy('uri').execute(),
    thread: await db.selectFrom('post').select('uri').where('replyRoot', '=', root).orderBy('sortAt').orderBy('uri').execute(),
    quotes: await db.selectFrom('post').select('uri').where('quoteUri', '=', root).orderBy('sortAt', 'desc').execute(),
    topLevel: await db.selectFrom('post').select('uri').where('replyParent', 'is', null).orderBy('uri').execute(),
  }
}

describe.each(dialects)('schema migrations 009-014 on an existing database (%s)', (dialect) => {
  const cleanups: (() => Promise<void>)[] = []
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c()
  })

  it('keeps every row and answer, and the indexes still serve the lookups', async () => {
    const tdb = await testDb(dialect)
    cleanups.push(() => tdb.cleanup())
    // the database as the earlier code left it: migrations up to 008, rows written by the indexer
    const all = appviewMigrations(dialect)
    const before = Object.fromEntries(Object.entries(all).filter(([name]) => !NEW_MIGRATIONS.includes(name)))
    expect(Object.keys(all).length - Object.keys(before).length).toBe(NEW_MIGRATIONS.length)
    let database = await open(tdb)
    await migrateToLatest(database.db, before)
    let indexer = new Indexer(database)
    const at = (n: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, n)).toISOString()
    const root = await index(indexer, did(0), 'app.bsky.feed.post', 'root', { text: 'root', createdAt: at(1) })
    const r1 = await index(indexer, did(1), 'app.bsky.feed.post', 'r1', { text: 'r1', createdAt: at(2), reply: { root, parent: root } })
    await index(indexer, did(2), 'app.bsky.feed.post', 'r2', { text: 'r2', createdAt: at(3), reply: { root, parent: root } })
    await index(indexer, did(3), 'app.bsky.feed.post', 'r3', { text: 'r3', createdAt: at(4), reply: { root, parent: r1 } })
    for (let i = 1; i <= 2; i++) {
      await index(indexer, did(i + 3), 'app.bsky.feed.post', 'q', { text: `q${i}`, createdAt: at(5 + i), embed: { $type: 'app.bsky.embed.record', record: root } })
    }
    for (let i = 1; i <= 3; i++) await index(indexer, did(i), 'app.bsky.feed.like', 'l', { subject: root, createdAt: at(10 + i) })
    await index(indexer, did(4), 'app.bsky.feed.repost', 'rp', { subject: root, createdAt: at(20) })
    for (let i = 1; i <= 5; i++) await index(indexer, did(i), 'app.bsky.graph.follow', 'f', { subject: did(0), createdAt: at(30 + i) })
    const list = await index(indexer, did(0), 'app.bsky.graph.list', 'l', { name: 'l', purpose: 'app.bsky.graph.defs#curatelist', createdAt: at(40) })
    for (let i = 1; i <= 3; i++) await index(indexer, did(0), 'app.bsky.graph.listitem', `i${i}`, { list: list.uri, subject: did(i), createdAt: at(40 + i) })
    for (let i = 0; i < 6; i++) await index(indexer, did(9), 'app.bsky.feed.post', `p${i}`, { text: `plain ${i}`, createdAt: at(50 + i) })
    const labelerRecord = { policies: { labelValues: ['spam'] }, createdAt: at(56) }
    for (const n of [7, 8]) await index(indexer, did(n), LABELER_COLLECTION, 'self', labelerRecord)
    // accounts whose DIDs start with another's (did:web with a port)
    const webs = ['did:web:mig.example', 'did:web:mig.example%3A8080', 'did:web:mig.example0']
    for (const w of webs) await index(indexer, w, 'app.bsky.feed.post', 'w', { text: w, createdAt: at(57) })
    await index(indexer, webs[0]!, 'app.bsky.feed.like', 'wl', { subject: r1, createdAt: at(58) })
    const old = await dump(database, root.uri)
    expect(old.recordAgg.find((r) => r.uri === root.uri)).toMatchObject({ likeCount: 3, repostCount: 1, replyCount: 2, quoteCount: 2 })
    expect(old.replies).toHaveLength(2)
    expect(old.thread).toHaveLength(3)
    expect(old.quotes).toHaveLength(2)
    expect(old.listAgg).toEqual([{ uri: list.uri, itemCount: 3 }])
    await indexer.close()
    await database.close()

    // the new code opens it: 009 to 014 run
    database = await open(tdb)
    await migrateToLatest(database.db, all)
    expect(await dump(database, root.uri)).toEqual(old)
    // an account's records (the resync's condition): its own, not those of an account whose DID starts with its DID
    for (const [w, n] of [[webs[0]!, 2], [webs[1]!, 1], [webs[2]!, 1], [did(9), 6], [did(6), 0]] as const) {
      const ofDid = recordsOfDid(dialect, w)
      const rows = await runQuery<{ uri: string }>(database.db, dialect, `SELECT uri FROM record WHERE ${ofDid.where} ORDER BY uri`, ofDid.params)
      expect(rows, w).toHaveLength(n)
      for (const r of rows) expect(r.uri.startsWith(`at://${w}/`), r.uri).toBe(true)
    }
    expect((await labelerDidsQuery(database.db).execute()).map((r) => r.did).sort()).toEqual([did(7), did(8)])
    if (dialect === 'sqlite') {
      const ddl = database.sqlite!.prepare("SELECT name, sql FROM sqlite_master WHERE name IN ('record_agg', 'profile_agg', 'list_agg', 'post_reply_parent_idx', 'post_reply_root_idx', 'post_quote_idx', 'feed_item_post_idx', 'record_did_collection_idx', 'post_sort_idx', 'repost_creator_idx', 'post_creator_sort_idx')").all() as { name: string; sql: string }[]
      const by = Object.fromEntries(ddl.map((d) => [d.name, d.sql]))
      for (const t of ['record_agg', 'profile_agg', 'list_agg']) expect(by[t], t).toMatch(/WITHOUT ROWID$/)
      for (const i of ['post_reply_root_idx', 'post_quote_idx']) expect(by[i], i).toMatch(/WHERE "\w+" IS NOT NULL$/)
      expect(by.post_reply_parent_idx).toBeUndefined()
      expect(by.feed_item_post_idx).toBeUndefined()
      const plan = (text: string) => (database.sqlite!.prepare(`EXPLAIN QUERY PLAN ${text}`).all('x', 'y') as { detail: string }[]).map((r) => r.detail).join(' | ')
      expect(plan('SELECT p.uri FROM json_each(?) j CROSS JOIN post p ON p."replyParent" = j.value ORDER BY p."sortAt" LIMIT 10 OFFSET ?')).toContain('INDEX post_reply_parent_cover_idx (replyParent=?)')
      expect(plan('SELECT uri FROM post WHERE "quoteUri" = ? AND "sortAt" < ? ORDER BY "sortAt" DESC LIMIT 10')).toContain('USING INDEX post_quote_idx')
      expect(plan('SELECT g."likeCount" FROM json_each(?) j CROSS JOIN record_agg g ON g.uri = j.value WHERE g."likeCount" > ?')).toContain('SEARCH g USING PRIMARY KEY (uri=?)')
      // the label subscriptions' lookup reads the partial index, not every record
      const labelers = labelerDidsQuery(database.db).compile()
      const labelersPlan = database.sqlite!.prepare(`EXPLAIN QUERY PLAN ${labelers.sql}`).all(...labelers.parameters) as { detail: string }[]
      expect(labelersPlan.map((r) => r.detail)).toEqual(['SCAN record USING INDEX record_labeler_idx'])
      // 013: an account's records are a range of the URI key (the resync), a labeler record one URI (actorCounts, getServices)
      expect(by.record_did_collection_idx).toBeUndefined()
      expect([by.post_sort_idx, by.repost_creator_idx, by.post_creator_sort_idx === undefined]).toEqual([undefined, undefined, false])
      const planOf = (text: string, ...params: unknown[]) => (database.sqlite!.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...params) as { detail: string }[]).map((r) => r.detail).join(' | ')
      expect(planOf(`SELECT uri, cid FROM record WHERE ${recordsOfDid('sqlite', 'x').where}`, 'a', 'b')).toContain('(uri>? AND uri<?)')
      expect(planOf(`SELECT a.did, (SELECT 1 FROM record l WHERE l.uri = 'at://' || a.did || '/' || ? || '/self') FROM actor a`, 'x')).toMatch(/SEARCH l USING COVERING INDEX sqlite_autoindex_record_1 \(uri=\?\)/)
    } else {
      const { rows } = await sql<{ indexname: string; indexdef: string }>`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = ${tdb.dbSchema!} AND tablename IN ('post', 'feed_item')`.execute(database.db)
      const by = Object.fromEntries(rows.map((r) => [r.indexname, r.indexdef]))
      for (const i of ['post_reply_root_idx', 'post_quote_idx']) expect(by[i], i).toMatch(/WHERE \("\w+" IS NOT NULL\)$/)
      expect(by.post_reply_parent_idx).toBeUndefined()
      expect(by.post_reply_parent_cover_idx).toBeDefined()
      expect(by.feed_item_post_idx).toBeUndefined()
      expect(by.feed_item_originator_idx).toBeDefined()
      const labeler = await sql<{ indexdef: string }>`SELECT indexdef FROM pg_indexes WHERE schemaname = ${tdb.dbSchema!} AND indexname = 'record_labeler_idx'`.execute(database.db)
      expect(labeler.rows[0]?.indexdef).toMatch(/WHERE \(collection = 'app\.bsky\.labeler\.service'::text\)$/)
      // (kept on PostgreSQL: an account's records are read by did there)
      const didIndex = await sql<{ indexdef: string }>`SELECT indexdef FROM pg_indexes WHERE schemaname = ${tdb.dbSchema!} AND indexname = 'record_did_collection_idx'`.execute(database.db)
      expect(didIndex.rows).toHaveLength(1)
      const gone = await sql<{ indexname: string }>`SELECT indexname FROM pg_indexes WHERE schemaname = ${tdb.dbSchema!} AND indexname IN ('post_sort_idx', 'repost_creator_idx', 'post_creator_sort_idx', 'repost_subject_idx')`.execute(database.db)
      expect(gone.rows.map((r) => r.indexname).sort()).toEqual(['post_creator_sort_idx', 'repost_subject_idx'])
    }

    // writes after the migration keep the counts (upserts on the rebuilt tables)
    indexer = new Indexer(database)
    await index(indexer, did(5), 'app.bsky.feed.like', 'l', { subject: root, createdAt: at(60) })
    await index(indexer, did(5), 'app.bsky.feed.post', 'r4', { text: 'r4', createdAt: at(61), reply: { root, parent: root } })
    await indexer.deleteOne(`at://${did(1)}/app.bsky.feed.like/l`)
    const after = await dump(database, root.uri)
    expect(after.recordAgg.find((r) => r.uri === root.uri)).toMatchObject({ likeCount: 3, replyCount: 3, quoteCount: 2 })
    expect(after.replies).toHaveLength(3)
    expect(after.profileAgg.find((r) => r.did === did(5))).toMatchObject({ postsCount: 2, followsCount: 1 })
    await indexer.close()
    await database.close()

    // and the AppView serves it
    const net = await FakeNetwork.start()
    cleanups.push(() => net.close())
    const server = await startAppView(net, tdb)
    cleanups.push(() => server.close())
    const { data } = await agentFor(server).app.bsky.feed.getPostThread({ uri: root.uri, depth: 2 })
    const thread = data.thread as { post: { likeCount?: number; replyCount?: number; quoteCount?: number }; replies?: unknown[] }
    expect(thread.post).toMatchObject({ likeCount: 3, replyCount: 3, quoteCount: 2 })
    expect(thread.replies).toHaveLength(3)
  })
})
