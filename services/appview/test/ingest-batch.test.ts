/**
 * Live ingest's group commit: a rapid mix of events of several accounts (posts, replies, mentions,
 * quotes, likes, reposts, follows, then unlikes, unfollows, a deleted post, a profile update, and a
 * like created and deleted before its batch commits) indexed by an AppView writing hundreds of commits
 * per transaction ends with exactly the same rows, counters and notifications as an AppView writing one
 * commit per transaction and verifying in its main thread (the oracle), both following the same PDS; the
 * batched one verifies in worker threads, from the frames' bytes (the raw-frame path: nothing decoded in its
 * main thread), the oracle from the frames decoded in its main thread. On SQLite, and on PostgreSQL when
 * STRATOS_TEST_PG_URL is set.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AppViewServer } from '../src/server.js'
import { FakeNetwork, PG_URL, caughtUp, follow, like, mention, post, quote, reply, repost, startAppView, testDb, waitFor, type Account, type TestDb, type WriteResult } from './helpers.js'

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']

/** The index's content without timestamps, sorted: what the two AppViews must agree on. */
async function dump(server: AppViewServer): Promise<Record<string, unknown[]>> {
  const db = server.ctx.db
  const q = async (text: string) => (await sql.raw(text).execute(db)).rows
  return {
    record: await q('SELECT uri, cid FROM record ORDER BY uri'),
    post: await q('SELECT uri, "replyParent", "quoteUri", "violatesThreadGate", "violatesEmbeddingRules", text FROM post ORDER BY uri'),
    like: await q('SELECT uri, subject FROM "like" ORDER BY uri'),
    repost: await q('SELECT uri, subject FROM repost ORDER BY uri'),
    follow: await q('SELECT uri, "subjectDid" FROM follow ORDER BY uri'),
    profile: await q('SELECT uri, "displayName" FROM profile ORDER BY uri'),
    feed_item: await q('SELECT uri, type, "postUri", "originatorDid" FROM feed_item ORDER BY uri'),
    notification: await q('SELECT did, author, "recordUri", reason, "reasonSubject" FROM notification ORDER BY did, "recordUri", reason'),
    record_agg: await q('SELECT uri, "likeCount", "repostCount", "replyCount", "quoteCount" FROM record_agg WHERE "likeCount" + "repostCount" + "replyCount" + "quoteCount" > 0 ORDER BY uri'),
    profile_agg: await q(
      'SELECT did, "followersCount", "followsCount", "postsCount" FROM profile_agg WHERE "followersCount" + "followsCount" + "postsCount" > 0 ORDER BY did',
    ),
    repo_state: await q('SELECT did, rev, data FROM repo_state ORDER BY did'),
    post_fts: await q('SELECT uri FROM post_fts ORDER BY uri'),
  }
}

/** Counters recomputed from the rows, in the dump's shape. */
async function recount(server: AppViewServer, what: 'record' | 'profile'): Promise<unknown[]> {
  const db = server.ctx.db
  const q = async (text: string) => (await sql.raw(text).execute(db)).rows as Record<string, unknown>[]
  const counts = new Map<string, Record<string, number>>()
  const add = (key: string, col: string, n: unknown) => {
    const row = counts.get(key) ?? {}
    row[col] = (row[col] ?? 0) + Number(n)
    counts.set(key, row)
  }
  const cols =
    what === 'record'
      ? { key: 'uri', names: ['likeCount', 'repostCount', 'replyCount', 'quoteCount'] }
      : { key: 'did', names: ['followersCount', 'followsCount', 'postsCount'] }
  if (what === 'record') {
    for (const r of await q('SELECT subject AS k, count(*) AS n FROM "like" GROUP BY subject')) add(String(r.k), 'likeCount', r.n)
    for (const r of await q('SELECT subject AS k, count(*) AS n FROM repost GROUP BY subject')) add(String(r.k), 'repostCount', r.n)
    for (const r of await q('SELECT "replyParent" AS k, count(*) AS n FROM post WHERE "replyParent" IS NOT NULL GROUP BY "replyParent"')) add(String(r.k), 'replyCount', r.n)
    for (const r of await q('SELECT "quoteUri" AS k, count(*) AS n FROM post WHERE "quoteUri" IS NOT NULL GROUP BY "quoteUri"')) add(String(r.k), 'quoteCount', r.n)
  } else {
    for (const r of await q('SELECT "subjectDid" AS k, count(*) AS n FROM follow GROUP BY "subjectDid"')) add(String(r.k), 'followersCount', r.n)
    for (const r of await q('SELECT creator AS k, count(*) AS n FROM follow GROUP BY creator')) add(String(r.k), 'followsCount', r.n)
    for (const r of await q('SELECT creator AS k, count(*) AS n FROM post GROUP BY creator')) add(String(r.k), 'postsCount', r.n)
  }
  return [...counts.keys()]
    .sort()
    .map((k) => ({ [cols.key]: k, ...Object.fromEntries(cols.names.map((c) => [c, counts.get(k)![c] ?? 0])) }))
}

describe.each(dialects)('ingest: group commit gives the same index as one commit per transaction (%s)', (dialect) => {
  let net: FakeNetwork
  let dbBatched: TestDb
  let dbOracle: TestDb
  let batched: AppViewServer
  let oracle: AppViewServer

  beforeAll(async () => {
    net = await FakeNetwork.start()
    dbBatched = await testDb(dialect)
    dbOracle = await testDb(dialect)
    // the batched one also verifies in 2 worker threads; the oracle in its main thread
    batched = await startAppView(net, dbBatched, { verifyWorkers: 2 })
    oracle = await startAppView(net, dbOracle, {}, { ingest: { maxBatch: 1, rawFrames: false } })
  })

  afterAll(async () => {
    await batched?.close()
    await oracle?.close()
    await net?.close()
    await dbBatched?.cleanup()
    await dbOracle?.cleanup()
  })

  it('a rapid mix of creates, updates and deletes of 6 accounts', async () => {
    const accounts: Account[] = []
    for (let i = 0; i < 6; i++) accounts.push(await net.createAccount(`batch${i}.test`))
    // the accounts' own first events written before the writer is held: the count of queued writes
    // below must be of this test's commits only
    await caughtUp(batched, net)
    const posts: WriteResult[][] = accounts.map(() => [])
    // nothing below waits for the AppViews: the events pile up and are written in batches (the batched
    // one's writer is held until several commits wait, so at least one batch holds more than one)
    batched.ctx.ingester.writer.pause()
    const seq0 = (await net.eventLog.latestSeq()) ?? 0
    for (let round = 0; round < 8; round++) {
      for (const [i, a] of accounts.entries()) {
        const other = accounts[(i + 1) % accounts.length]!
        posts[i]!.push(await net.create(a, 'app.bsky.feed.post', post(`round ${round} of ${i}`)))
        const theirs = posts[(i + 1) % accounts.length]!
        if (theirs.length > 0) {
          const target = theirs[theirs.length - 1]!
          await net.create(a, 'app.bsky.feed.like', like(target))
          if (round % 2 === 0) await net.create(a, 'app.bsky.feed.repost', repost(target))
          if (round % 3 === 0) await net.create(a, 'app.bsky.feed.post', reply(`reply ${round}`, theirs[0]!, target))
          if (round === 5) await net.create(a, 'app.bsky.feed.post', quote(`quote ${round}`, target))
        }
        if (round === 0) await net.create(a, 'app.bsky.graph.follow', follow(other.did))
        if (round === 1) await net.create(a, 'app.bsky.feed.post', mention(`hi @${other.handle}`, other.handle, other.did))
      }
    }
    // deletes and updates, still without waiting
    const a0 = accounts[0]!
    const a1 = accounts[1]!
    const l = await net.create(a0, 'app.bsky.feed.like', like(posts[1]![0]!))
    await net.delete(a0, l.uri)
    const f = await net.create(a1, 'app.bsky.graph.follow', follow(accounts[3]!.did))
    await net.delete(a1, f.uri)
    await net.delete(a1, posts[1]![2]!.uri)
    await net.create(a0, 'app.bsky.actor.profile', { displayName: 'First' }, 'self')
    await net.update(a0, `at://${a0.did}/app.bsky.actor.profile/self`, { displayName: 'Second' })
    // gates written in the same batch as the posts they judge (read from the record table), a post
    // created, updated twice and deleted, and another created and updated, all before the batch commits
    const a2 = accounts[2]!
    const a3 = accounts[3]!
    const gated = await net.create(a2, 'app.bsky.feed.post', post('gated in batch'))
    const grk = gated.uri.split('/').pop()!
    await net.create(a2, 'app.bsky.feed.threadgate', { post: gated.uri, allow: [], createdAt: new Date().toISOString() }, grk)
    await net.create(a2, 'app.bsky.feed.postgate', { post: gated.uri, embeddingRules: [{ $type: 'app.bsky.feed.postgate#disableRule' }], createdAt: new Date().toISOString() }, grk)
    // accounts are not ordered among themselves: the gates are handed to both writers (the batched one
    // still held) before the other account's reply and quote are made
    const seq1 = (await net.eventLog.latestSeq()) ?? 0
    await waitFor(() => batched.ctx.ingester.writer.pending >= seq1 - seq0, 30_000, 'every commit so far queued in the held writer')
    await caughtUp(oracle, net, seq1)
    await net.create(a3, 'app.bsky.feed.post', reply('let me in', gated, gated))
    await net.create(a3, 'app.bsky.feed.post', quote('quoting anyway', gated))
    const churn = await net.create(a3, 'app.bsky.feed.post', post('first text'))
    await net.update(a3, churn.uri, post('second text'))
    await net.update(a3, churn.uri, post('third text'))
    await net.delete(a3, churn.uri)
    const kept = await net.create(a3, 'app.bsky.feed.post', reply('kept first', posts[4]![0]!, posts[4]![0]!))
    await net.update(a3, kept.uri, reply('kept second', posts[4]![0]!, posts[4]![0]!))
    const liked = await net.create(a3, 'app.bsky.feed.like', like(posts[4]![1]!))
    // two likes of one post in one batch (the second a duplicate), then the first deleted: no like left
    const dup1 = await net.create(a3, 'app.bsky.feed.like', like(posts[5]![3]!))
    await net.create(a3, 'app.bsky.feed.like', like(posts[5]![3]!))
    await net.delete(a3, dup1.uri)
    await net.update(a3, liked.uri, like(posts[4]![2]!))
    // an update of a post of an earlier round (already in the table when its batch starts, on the oracle)
    await net.update(a2, posts[2]![0]!.uri, post('round 0 edited'))
    // one commit with several ops: a post and a like of it, and the delete of an earlier repost
    const rk = 'batchmulti'
    await net.write(a1, [
      { action: 'create', collection: 'app.bsky.feed.post', rkey: rk, record: { $type: 'app.bsky.feed.post', ...post('multi') } },
      { action: 'create', collection: 'app.bsky.feed.like', rkey: 'batchmultilike', record: { $type: 'app.bsky.feed.like', ...like(posts[2]![1]!) } },
    ])

    // every commit queued in the held writer: they go in one batch
    const seq2 = (await net.eventLog.latestSeq()) ?? 0
    await waitFor(() => batched.ctx.ingester.writer.pending >= seq2 - seq0, 30_000, 'writes queued in the held batch writer')
    batched.ctx.ingester.writer.resume()
    await caughtUp(batched, net)
    await caughtUp(oracle, net)
    const [got, want] = [await dump(batched), await dump(oracle)]
    expect(want.post!.length).toBeGreaterThan(60)
    expect(want.notification!.length).toBeGreaterThan(50)
    expect(want.feed_item!.length).toBeGreaterThan(60)
    expect(got).toEqual(want)
    // the gates of the same batch were applied
    expect(want.post!.filter((p) => (p as { violatesThreadGate: unknown }).violatesThreadGate === 1).length).toBe(1)
    expect(want.post!.filter((p) => (p as { violatesEmbeddingRules: unknown }).violatesEmbeddingRules === 1).length).toBe(1)
    // and the counters are what the rows say (summed per batch, they must still add up)
    expect(got.record_agg).toEqual(await recount(batched, 'record'))
    expect(got.profile_agg).toEqual(await recount(batched, 'profile'))
    // the batched AppView did write several commits per transaction; the oracle one each
    const w = batched.ctx.ingester.writer.stats
    expect(w.writes / w.batches).toBeGreaterThan(1)
    const o = oracle.ctx.ingester.writer.stats
    expect(o.writes).toBe(o.batches)
    expect(batched.ctx.ingester.verifier?.workers).toBe(2)
    expect(oracle.ctx.ingester.verifier?.workers).toBe(0)
    // (two AppViews indexing ~150 commits, one of them a commit per transaction: ~25 s on a loaded machine)
  }, 120_000)

  it('the actor rows of a batch\'s records are made at its end (one statement), as one record at a time makes them', async () => {
    const { indexer, writer } = { indexer: batched.ctx.indexer, writer: batched.ctx.ingester.writer }
    const dids = ['did:plc:batchactor0000000000000a', 'did:plc:batchactor0000000000000b']
    const rec = (did: string, i: number) => ({ uri: `at://${did}/app.bsky.feed.post/3kbatchactor${i}`, json: { $type: 'app.bsky.feed.post', ...post(`by a new actor ${i}`) } })
    const cid = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm'
    const actorRows = async (server: AppViewServer, list: string[]) =>
      (await server.ctx.db.selectFrom('actor').select(['did', 'handle', 'upstreamStatus']).where('did', 'in', list).orderBy('did').execute()).map((r) => ({ ...r, did: r.did.slice(-1) }))
    expect(await actorRows(batched, dids)).toEqual([])
    // two records of each of two accounts that have no actor row, in one batch
    writer.pause()
    const writes = [0, 1, 2, 3].map((i) => writer.write(async (tx, b) => void (await indexer.indexRecord(tx, rec(dids[i % 2]!, i).uri, cid, rec(dids[i % 2]!, i).json, { batch: b.index }))))
    writer.resume()
    await Promise.all(writes)
    // the same records one at a time, outside any batch
    const alone = dids.map((d) => d.replace('batchactor', 'aloneactor0'))
    for (const i of [0, 1, 2, 3]) expect(await oracle.ctx.indexer.indexOne(rec(alone[i % 2]!, i).uri, cid, rec(alone[i % 2]!, i).json)).toBe('indexed')
    const got = await actorRows(batched, dids)
    expect(got).toEqual([
      { did: 'a', handle: null, upstreamStatus: null },
      { did: 'b', handle: null, upstreamStatus: null },
    ])
    expect(got).toEqual(await actorRows(oracle, alone))
    const posts = await batched.ctx.db.selectFrom('post').select('uri').where('creator', 'in', dids).execute()
    expect(posts.length).toBe(4)
  })
})
