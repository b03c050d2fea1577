/**
 * A resync of an account the index already holds (#sync, a broken chain, a fallback after lost events)
 * that finds many changes: records created, updated and deleted upstream without events. It brings the
 * index in line with the fetched repo (rows, feed items, search entries, counters, notifications of what
 * it finds new) and writes them as live batches do: what the record table holds is read once, rows go in
 * with multi-row statements and counters once per key, so the statements it runs do not grow with the
 * records it indexes. On SQLite, and on PostgreSQL when STRATOS_TEST_PG_URL is set.
 */
import { CompiledQuery } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nextTid } from '@stratos/core/syntax'
import type { AppViewServer } from '../src/server.js'
import { FakeNetwork, PG_URL, caughtUp, follow, like, post, reply, repost, startAppView, testDb, type Account, type TestDb, type WriteResult } from './helpers.js'

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']

describe.each(dialects)('ingest: a resync that finds many changes (%s)', (dialect) => {
  let net: FakeNetwork
  let db: TestDb
  let server: AppViewServer

  beforeAll(async () => {
    net = await FakeNetwork.start()
    db = await testDb(dialect)
    server = await startAppView(net, db)
  })

  afterAll(async () => {
    await server?.close()
    await net?.close()
    await db?.cleanup()
  })

  const q = async <T = Record<string, unknown>>(text: string, params: unknown[] = []) => {
    let n = 0
    const compiled = dialect === 'postgres' ? text.replace(/\?/g, () => `$${++n}`) : text
    return (await server.ctx.db.executeQuery<T>(CompiledQuery.raw(compiled, params))).rows
  }

  it('creates, updates and deletes found by a #sync are indexed with their counters and notifications, in a bounded number of statements', async () => {
    const me = await net.createAccount('resyncme.test')
    const others: Account[] = []
    for (let i = 0; i < 3; i++) others.push(await net.createAccount(`resyncother${i}.test`))
    const theirPosts: WriteResult[] = []
    for (const o of others) for (let i = 0; i < 4; i++) theirPosts.push(await net.create(o, 'app.bsky.feed.post', post(`theirs ${i} of ${o.handle}`)))
    // what the index holds before: posts, likes, reposts and follows seen live
    const mine: WriteResult[] = []
    for (let i = 0; i < 6; i++) mine.push(await net.create(me, 'app.bsky.feed.post', post(`mine ${i}`)))
    const likes: WriteResult[] = []
    for (let i = 0; i < 4; i++) likes.push(await net.create(me, 'app.bsky.feed.like', like(theirPosts[i]!)))
    const reposted = await net.create(me, 'app.bsky.feed.repost', repost(theirPosts[0]!))
    const followed = await net.create(me, 'app.bsky.graph.follow', follow(others[0]!.did))
    await caughtUp(server, net)

    // upstream changes without events: 2 posts and 2 likes deleted, a post edited, the repost and the
    // follow deleted; 80 new posts, 8 new likes (one of a post whose like is deleted here), 4 replies to
    // others' posts, a new follow
    const rk = (w: WriteResult) => w.uri.split('/').pop()!
    const writes: Parameters<FakeNetwork['write']>[1] = [
      { action: 'delete', collection: 'app.bsky.feed.post', rkey: rk(mine[0]!) },
      { action: 'delete', collection: 'app.bsky.feed.post', rkey: rk(mine[1]!) },
      { action: 'update', collection: 'app.bsky.feed.post', rkey: rk(mine[2]!), record: { $type: 'app.bsky.feed.post', ...post('mine 2, edited') } },
      { action: 'delete', collection: 'app.bsky.feed.like', rkey: rk(likes[0]!) },
      { action: 'delete', collection: 'app.bsky.feed.like', rkey: rk(likes[1]!) },
      { action: 'delete', collection: 'app.bsky.feed.repost', rkey: rk(reposted) },
      { action: 'delete', collection: 'app.bsky.graph.follow', rkey: rk(followed) },
      { action: 'create', collection: 'app.bsky.graph.follow', rkey: nextTid(), record: { $type: 'app.bsky.graph.follow', ...follow(others[1]!.did) } },
    ]
    for (let i = 0; i < 80; i++) writes.push({ action: 'create', collection: 'app.bsky.feed.post', rkey: nextTid(), record: { $type: 'app.bsky.feed.post', ...post(`found later ${i}`) } })
    const newlyLiked = [theirPosts[0]!, ...theirPosts.slice(4, 11)]
    for (const p of newlyLiked) writes.push({ action: 'create', collection: 'app.bsky.feed.like', rkey: nextTid(), record: { $type: 'app.bsky.feed.like', ...like(p) } })
    const replied = theirPosts.slice(8, 12)
    for (const p of replied) writes.push({ action: 'create', collection: 'app.bsky.feed.post', rkey: nextTid(), record: { $type: 'app.bsky.feed.post', ...reply('a reply found later', p, p) } })
    await net.write(me, writes, { emit: false })

    // statements run by the writer's connection while the resync runs (SQLite: every statement call)
    let statements = 0
    const restore: (() => void)[] = []
    if (dialect === 'sqlite') {
      const proto = Object.getPrototypeOf(server.ctx.database.sqlite!.prepare('SELECT 1')) as Record<string, (...a: unknown[]) => unknown>
      for (const m of ['run', 'all', 'get', 'iterate']) {
        const orig = proto[m]!
        proto[m] = function (this: unknown, ...a: unknown[]) {
          statements++
          return orig.apply(this, a)
        }
        restore.push(() => (proto[m] = orig))
      }
    }
    const resyncs = server.ctx.ingester.stats.resyncs
    const indexed = server.ctx.ingester.stats.resyncedRecords
    try {
      await caughtUp(server, net, net.emitSync(me))
    } finally {
      for (const r of restore) r()
    }
    expect(server.ctx.ingester.stats.resyncs).toBe(resyncs + 1)
    // 80 + 4 posts, 8 likes, a follow and the edited post
    expect(server.ctx.ingester.stats.resyncedRecords - indexed).toBe(94)
    // (one by one: several statements per record indexed, over 600; here ~75: the deletes and the replies' gate lookups go one by one)
    if (dialect === 'sqlite') expect(statements).toBeLessThan(150)

    // the index holds the repo's records, nothing else
    const repoUris: string[] = []
    for await (const entry of me.repo.walkRecords()) repoUris.push(`at://${me.did}/${entry.collection}/${entry.rkey}`)
    const indexedUris = (await q<{ uri: string }>('SELECT uri FROM record WHERE did = ? ORDER BY uri', [me.did])).map((r) => r.uri)
    expect(indexedUris).toEqual(repoUris.sort())
    expect((await q('SELECT uri FROM post WHERE creator = ?', [me.did])).length).toBe(4 + 80 + 4)
    expect((await q('SELECT text FROM post WHERE uri = ?', [mine[2]!.uri]))[0]).toEqual({ text: 'mine 2, edited' })
    expect((await q('SELECT uri FROM feed_item WHERE "originatorDid" = ?', [me.did])).length).toBe(4 + 80 + 4)
    expect((await q('SELECT uri FROM "like" WHERE creator = ?', [me.did])).length).toBe(2 + 8)
    expect((await q('SELECT uri FROM repost WHERE creator = ?', [me.did])).length).toBe(0)
    expect((await q<{ subjectDid: string }>('SELECT "subjectDid" FROM follow WHERE creator = ?', [me.did])).map((r) => r.subjectDid)).toEqual([others[1]!.did])
    expect(Number((await q<{ n: unknown }>('SELECT count(*) AS n FROM post_fts WHERE uri IN (SELECT uri FROM post WHERE creator = ?)', [me.did]))[0]!.n)).toBe(88)

    // counters: what the rows say
    const counts = async (uri: string) => (await q<Record<string, unknown>>('SELECT "likeCount", "repostCount", "replyCount" FROM record_agg WHERE uri = ?', [uri]))[0]
    const rowsSay = async (uri: string) => ({
      likeCount: Number((await q<{ n: unknown }>('SELECT count(*) AS n FROM "like" WHERE subject = ?', [uri]))[0]!.n),
      repostCount: Number((await q<{ n: unknown }>('SELECT count(*) AS n FROM repost WHERE subject = ?', [uri]))[0]!.n),
      replyCount: Number((await q<{ n: unknown }>('SELECT count(*) AS n FROM post WHERE "replyParent" = ?', [uri]))[0]!.n),
    })
    for (const p of theirPosts) {
      const c = await counts(p.uri)
      expect(c ? { likeCount: Number(c.likeCount), repostCount: Number(c.repostCount), replyCount: Number(c.replyCount) } : { likeCount: 0, repostCount: 0, replyCount: 0 }).toEqual(await rowsSay(p.uri))
    }
    // theirPosts[0]: its like deleted and a new one found (1), its repost deleted (0)
    expect(await rowsSay(theirPosts[0]!.uri)).toEqual({ likeCount: 1, repostCount: 0, replyCount: 0 })
    const profile = async (did: string) => (await q<Record<string, unknown>>('SELECT "followersCount", "followsCount", "postsCount" FROM profile_agg WHERE did = ?', [did]))[0]!
    expect(Object.values(await profile(me.did)).map(Number)).toEqual([0, 1, 88])
    expect(Number((await profile(others[0]!.did)).followersCount)).toBe(0)
    expect(Number((await profile(others[1]!.did)).followersCount)).toBe(1)

    // notifications: what the resync found new notifies (likes, replies, the follow); the deleted likes' are gone
    const notes = await q<{ recordUri: string; reason: string }>('SELECT "recordUri", reason FROM notification WHERE author = ? ORDER BY reason, "recordUri"', [me.did])
    const byReason = (r: string) => notes.filter((n) => n.reason === r).length
    expect(byReason('like')).toBe(2 + 8)
    expect(byReason('reply')).toBe(4)
    expect(byReason('follow')).toBe(1)
    expect(byReason('repost')).toBe(0)
    expect(notes.some((n) => n.recordUri === likes[0]!.uri || n.recordUri === likes[1]!.uri)).toBe(false)
  }, 60_000)
})
