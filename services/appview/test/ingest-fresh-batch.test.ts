/**
 * A batched first backfill (several repos in one batch writer transaction): indexFresh holds each repo's
 * record rows and its posts, likes, reposts and follows in the batch, and flushBatch writes them with one
 * multi-row statement per table for every repo of the batch (not a few statements per repo). The rows,
 * feed items and counters are those the records say; a duplicate like stays in the record table only; a
 * reply's or quote's gate check sees the batch's rows, which go in early only when a gate applies. On
 * SQLite, and on PostgreSQL when STRATOS_TEST_PG_URL is set.
 */
import type { KyselyPlugin } from 'kysely'
import { describe, expect, it } from 'vitest'
import { migrateToLatest, openPostgres, openSqlite, type Database } from '@stratos/core/db'
import { IndexBatch, Indexer, type FreshRecord } from '../src/indexer/indexer.js'
import { appviewMigrations } from '../src/indexer/migrations.js'
import type { DatabaseSchema } from '../src/indexer/schema.js'
import { PG_URL, testDb } from './helpers.js'

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']
const CID = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm'
const NOW = '2026-01-01T00:00:00.000Z'
const REPOS = 20

const didOf = (i: number) => `did:plc:fresh${String(i).padStart(19, '0')}`
const rkey = (n: number) => `3l${String(n).padStart(11, 'a')}`

function fresh(did: string, collection: string, key: string, record: Record<string, unknown>): FreshRecord {
  return { uri: `at://${did}/${collection}/${key}`, cid: CID, collection, rkey: key, json: JSON.stringify({ $type: collection, ...record }), valid: true }
}

/** Repo i: 3 posts, a like and a repost of repo (i+1)'s first post (the like twice), a follow of repo i+1. */
function repoRecords(i: number): FreshRecord[] {
  const did = didOf(i)
  const next = didOf((i + 1) % REPOS)
  const subject = { uri: `at://${next}/app.bsky.feed.post/${rkey(0)}`, cid: CID }
  return [
    ...[0, 1, 2].map((n) => fresh(did, 'app.bsky.feed.post', rkey(n), { text: `post ${n} of ${i}`, createdAt: NOW })),
    fresh(did, 'app.bsky.feed.like', rkey(10), { subject, createdAt: NOW }),
    fresh(did, 'app.bsky.feed.like', rkey(11), { subject, createdAt: NOW }),
    fresh(did, 'app.bsky.feed.repost', rkey(12), { subject, createdAt: NOW }),
    fresh(did, 'app.bsky.graph.follow', rkey(13), { subject: next, createdAt: NOW }),
  ]
}

/** A migrated index database for `fn`, removed after it. */
async function withIndexDb(dialect: 'sqlite' | 'postgres', fn: (database: Database<DatabaseSchema>) => Promise<void>): Promise<void> {
  const tdb = await testDb(dialect)
  const database = tdb.dialect === 'postgres' ? await openPostgres<DatabaseSchema>(tdb.dbUrl, { schema: tdb.dbSchema! }) : openSqlite<DatabaseSchema>(tdb.dbUrl)
  try {
    await migrateToLatest(database.db, appviewMigrations(database.dialect))
    await fn(database)
  } finally {
    await database.close()
    await tdb.cleanup()
  }
}

describe.each(dialects)('a batched first backfill (%s)', (dialect) => {
  it('writes the repos of a batch with one statement per table, not per repo, and the same rows and counters', () => withIndexDb(dialect, async (database) => {
    const indexer = new Indexer(database, { now: () => NOW })
    for (let i = 0; i < REPOS; i++) await indexer.ensureActor(didOf(i))

    // statements run in the transaction (every query kysely executes passes its plugins' transformResult)
    let statements = 0
    const counter: KyselyPlugin = {
      transformQuery: (args) => args.node,
      transformResult: async (args) => {
        statements++
        return args.result
      },
    }
    let beforeFlush = 0
    let indexed = 0
    // the last repo also replies to repo 0's first post: its gate check reads the record table
    const replier = repoRecords(REPOS - 1)
    const root = { uri: `at://${didOf(0)}/app.bsky.feed.post/${rkey(0)}`, cid: CID }
    replier.push(fresh(didOf(REPOS - 1), 'app.bsky.feed.post', rkey(20), { text: 'a reply', reply: { root, parent: root }, createdAt: NOW }))
    await indexer.transact(async (t) => {
      const tx = t.withPlugin(counter)
      const batch = new IndexBatch()
      for (let i = 0; i < REPOS - 1; i++) indexed += await indexer.indexFresh(tx, didOf(i), repoRecords(i), batch, { actorExists: true })
      beforeFlush = statements
      indexed += await indexer.indexFresh(tx, didOf(REPOS - 1), replier, batch, { actorExists: true })
      await indexer.flushBatch(tx, batch)
    })
    expect(indexed).toBe(REPOS * 7 + 1)
    // nothing per repo before the batch's end (one by one: a record insert and 4 main-row inserts per repo)
    expect(beforeFlush).toBe(0)
    // the reply's gate check, then per table one statement for all repos, feed items, search, counters
    expect(statements).toBeLessThan(20)

    const db = database.db
    const count = async (table: 'record' | 'post' | 'like' | 'repost' | 'follow' | 'feed_item') => Number((await db.selectFrom(table).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)
    expect(await count('record')).toBe(REPOS * 7 + 1)
    expect(await count('post')).toBe(REPOS * 3 + 1)
    // the second like of the same post stays in the record table only
    expect(await count('like')).toBe(REPOS)
    expect(await count('repost')).toBe(REPOS)
    expect(await count('follow')).toBe(REPOS)
    expect(await count('feed_item')).toBe(REPOS * 4 + 1)
    const agg = await db.selectFrom('record_agg').select(['likeCount', 'repostCount', 'replyCount']).where('uri', '=', root.uri).executeTakeFirstOrThrow()
    expect([agg.likeCount, agg.repostCount, agg.replyCount].map(Number)).toEqual([1, 1, 1])
    const prof = await db.selectFrom('profile_agg').select(['followersCount', 'followsCount', 'postsCount']).where('did', '=', didOf(REPOS - 1)).executeTakeFirstOrThrow()
    expect([prof.followersCount, prof.followsCount, prof.postsCount].map(Number)).toEqual([1, 1, 4])
    // history: nobody notified
    expect(Number((await db.selectFrom('notification').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)).toBe(0)
  }))

  it('holds its rows through replies and quotes when no gate applies, and writes them first when one does', () => withIndexDb(dialect, async (database) => {
    const indexer = new Indexer(database, { now: () => NOW })
    for (let i = 0; i < REPOS; i++) await indexer.ensureActor(didOf(i))
    const post = (i: number, n: number) => ({ uri: `at://${didOf(i)}/app.bsky.feed.post/${rkey(n)}`, cid: CID })
    const quote = (ref: { uri: string; cid: string }) => ({ $type: 'app.bsky.embed.record', record: ref })
    // repo 0: an open post (0), a post whose threadgate lets only its followers reply (1), a post whose
    // postgate forbids quotes (2); the gates' record rows are held back by the batch like any other
    const gated = [
      ...repoRecords(0),
      fresh(didOf(0), 'app.bsky.feed.post', rkey(5), { text: 'followers only', createdAt: NOW }),
      fresh(didOf(0), 'app.bsky.feed.threadgate', rkey(5), { post: post(0, 5).uri, allow: [{ $type: 'app.bsky.feed.threadgate#followerRule' }], createdAt: NOW }),
      fresh(didOf(0), 'app.bsky.feed.post', rkey(6), { text: 'no quotes', createdAt: NOW }),
      fresh(didOf(0), 'app.bsky.feed.postgate', rkey(6), { post: post(0, 6).uri, embeddingRules: [{ $type: 'app.bsky.feed.postgate#disableRule' }], createdAt: NOW }),
    ]
    // repos 1.. reply to repo 0's open post, quote it, and reply to their own first post (a self-thread)
    const open = (i: number) => [
      ...repoRecords(i),
      fresh(didOf(i), 'app.bsky.feed.post', rkey(20), { text: 'reply', reply: { root: post(0, 0), parent: post(0, 0) }, createdAt: NOW }),
      fresh(didOf(i), 'app.bsky.feed.post', rkey(21), { text: 'quote', embed: quote(post(0, 0)), createdAt: NOW }),
      fresh(didOf(i), 'app.bsky.feed.post', rkey(22), { text: 'self', reply: { root: post(i, 0), parent: post(i, 0) }, createdAt: NOW }),
    ]
    let heldThrough = -1
    await indexer.transact(async (tx) => {
      const batch = new IndexBatch()
      await indexer.indexFresh(tx, didOf(0), gated, batch, { actorExists: true })
      for (let i = 1; i < REPOS - 3; i++) await indexer.indexFresh(tx, didOf(i), open(i), batch, { actorExists: true })
      // nothing went in yet: the replies and quotes found no gate, so nothing was written ahead of the batch's end
      heldThrough = Number((await tx.selectFrom('record').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)
      // repo REPOS-3 follows repo 0 and replies to the followers-only post (allowed: its follow is held in
      // the batch and goes in before the gate is read); REPOS-2 replies without following; REPOS-1 quotes
      // the post that forbids quotes
      const [a, b, c] = [REPOS - 3, REPOS - 2, REPOS - 1]
      await indexer.indexFresh(tx, didOf(a), [
        fresh(didOf(a), 'app.bsky.graph.follow', rkey(30), { subject: didOf(0), createdAt: NOW }),
        fresh(didOf(a), 'app.bsky.feed.post', rkey(31), { text: 'follower reply', reply: { root: post(0, 5), parent: post(0, 5) }, createdAt: NOW }),
      ], batch, { actorExists: true })
      await indexer.indexFresh(tx, didOf(b), [fresh(didOf(b), 'app.bsky.feed.post', rkey(31), { text: 'stranger reply', reply: { root: post(0, 5), parent: post(0, 5) }, createdAt: NOW })], batch, { actorExists: true })
      await indexer.indexFresh(tx, didOf(c), [fresh(didOf(c), 'app.bsky.feed.post', rkey(31), { text: 'forbidden quote', embed: quote(post(0, 6)), createdAt: NOW })], batch, { actorExists: true })
      await indexer.flushBatch(tx, batch)
    })
    expect(heldThrough).toBe(0)
    const db = database.db
    const flags = async (i: number, n: number) => {
      const row = await db.selectFrom('post').select(['violatesThreadGate', 'violatesEmbeddingRules']).where('uri', '=', post(i, n).uri).executeTakeFirstOrThrow()
      return [Number(row.violatesThreadGate ?? 0), Number(row.violatesEmbeddingRules ?? 0)]
    }
    expect(await flags(1, 20)).toEqual([0, 0])
    expect(await flags(1, 21)).toEqual([0, 0])
    expect(await flags(1, 22)).toEqual([0, 0])
    expect(await flags(REPOS - 3, 31)).toEqual([0, 0])
    expect(await flags(REPOS - 2, 31)).toEqual([1, 0])
    expect(await flags(REPOS - 1, 31)).toEqual([0, 1])
    expect(Number((await db.selectFrom('record').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)).toBe(gated.length + (REPOS - 4) * (7 + 3) + 2 + 1 + 1)
    const agg = await db.selectFrom('record_agg').select(['replyCount', 'quoteCount']).where('uri', '=', post(0, 0).uri).executeTakeFirstOrThrow()
    expect([agg.replyCount, agg.quoteCount].map(Number)).toEqual([REPOS - 4, REPOS - 4])
  }))

  it('(live writes too) holds a batch\'s rows through a reply to a post without a threadgate', () => withIndexDb(dialect, async (database) => {
    const indexer = new Indexer(database, { now: () => NOW })
    const root = { uri: `at://${didOf(0)}/app.bsky.feed.post/${rkey(0)}`, cid: CID }
    let held = -1
    await indexer.transact(async (tx) => {
      const batch = new IndexBatch()
      for (let i = 1; i <= 3; i++) {
        const uri = `at://${didOf(i)}/app.bsky.feed.post/${rkey(1)}`
        expect(await indexer.indexRecord(tx, uri, CID, { $type: 'app.bsky.feed.post', text: 'reply', reply: { root, parent: root }, createdAt: NOW }, { batch, valid: true })).toBe('indexed')
      }
      held = Number((await tx.selectFrom('record').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)
      await indexer.flushBatch(tx, batch)
    })
    expect(held).toBe(0)
    const agg = await database.db.selectFrom('record_agg').select('replyCount').where('uri', '=', root.uri).executeTakeFirstOrThrow()
    expect(Number(agg.replyCount)).toBe(3)
  }))
})
