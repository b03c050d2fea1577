/**
 * The AppView API suite, run on SQLite and (when STRATOS_TEST_PG_URL is set) on PostgreSQL. Accounts on
 * a fake PDS write signed commits; the AppView follows its firehose, verifies and indexes them, and the
 * tests query it with @atproto/api (every output is also validated against the lexicons by the server).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AppBskyFeedDefs } from '@atproto/api'
import type { AppViewServer } from '../src/server.js'
import { openSqlite } from '@stratos/core/db'
import { READ_MMAP_BYTES } from '../src/api/read-pool.js'
import {
  FakeNetwork,
  PG_URL,
  agentFor,
  block,
  caughtUp,
  expectXrpcError,
  follow,
  like,
  mention,
  now,
  post,
  quote,
  reply,
  repost,
  startAppView,
  testDb,
  type Account,
  type TestDb,
  type WriteResult,
} from './helpers.js'

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8])

if (!PG_URL) {
  console.log('SKIPPED: the PostgreSQL run of the AppView API suite (set STRATOS_TEST_PG_URL=postgres://... to run it)')
}

const uris = (feed: AppBskyFeedDefs.FeedViewPost[]) => feed.map((f) => f.post.uri)

function apiSuite(dialect: 'sqlite' | 'postgres', opts: { readWorkers?: number } = {}) {
  let net: FakeNetwork
  let db: TestDb
  let server: AppViewServer
  let alice: Account, bob: Account, carol: Account, dan: Account, eve: Account
  let P1: WriteResult, R1: WriteResult, Q1: WriteResult, M1: WriteResult, P2: WriteResult, B1: WriteResult, D1: WriteResult, AR: WriteResult
  let fBobAlice: WriteResult, fAliceBob: WriteResult, likeCarol: WriteResult, likeBob: WriteResult, rpBob: WriteResult, blockEve: WriteResult
  let avatar: Record<string, unknown>

  beforeAll(async () => {
    net = await FakeNetwork.start()
    db = await testDb(dialect)
    server = await startAppView(net, db, opts.readWorkers ? { readWorkers: opts.readWorkers } : {})
    if (opts.readWorkers) await server.ctx.readPool!.ready()
    alice = await net.createAccount('alice.test')
    bob = await net.createAccount('bob.test')
    carol = await net.createAccount('carol.test')
    dan = await net.createAccount('dan.test')
    eve = await net.createAccount('eve.test')
    avatar = net.addBlob(alice, PNG, 'image/png')
    await net.create(alice, 'app.bsky.actor.profile', { displayName: 'Alice Wonder', description: 'down the hole', avatar }, 'self')
    for (const [a, name] of [[bob, 'Bob'], [carol, 'Carol'], [dan, 'Dan'], [eve, 'Eve']] as const) {
      await net.create(a, 'app.bsky.actor.profile', { displayName: name }, 'self')
    }
    fBobAlice = await net.create(bob, 'app.bsky.graph.follow', follow(alice.did))
    await net.create(carol, 'app.bsky.graph.follow', follow(alice.did))
    await net.create(dan, 'app.bsky.graph.follow', follow(alice.did))
    fAliceBob = await net.create(alice, 'app.bsky.graph.follow', follow(bob.did))
    await net.create(eve, 'app.bsky.graph.follow', follow(bob.did))
    P1 = await net.create(alice, 'app.bsky.feed.post', post('hello world from alice'))
    R1 = await net.create(bob, 'app.bsky.feed.post', reply('nice one', P1, P1))
    likeCarol = await net.create(carol, 'app.bsky.feed.like', like(P1))
    likeBob = await net.create(bob, 'app.bsky.feed.like', like(P1))
    rpBob = await net.create(bob, 'app.bsky.feed.repost', repost(P1))
    Q1 = await net.create(carol, 'app.bsky.feed.post', quote('look at this', P1))
    M1 = await net.create(carol, 'app.bsky.feed.post', mention('hey @alice.test', 'alice.test', alice.did))
    const cat = net.addBlob(alice, new Uint8Array([0xff, 0xd8, 0xff, 9, 9, 9]), 'image/jpeg')
    P2 = await net.create(
      alice,
      'app.bsky.feed.post',
      post('a picture', { embed: { $type: 'app.bsky.embed.images', images: [{ image: cat, alt: 'a cat', aspectRatio: { width: 4, height: 3 } }] } }),
    )
    B1 = await net.create(bob, 'app.bsky.feed.post', post('bob standalone'))
    D1 = await net.create(dan, 'app.bsky.feed.post', post('dan here'))
    AR = await net.create(alice, 'app.bsky.feed.post', reply('hi dan', D1, D1))
    blockEve = await net.create(eve, 'app.bsky.graph.block', block(alice.did))
    await caughtUp(server, net)
  }, 60_000)

  afterAll(async () => {
    // the read methods were answered by the workers (the same assertions as in the main thread)
    if (opts.readWorkers && server) {
      expect(server.ctx.readPool!.served).toBeGreaterThan(0)
      // and taken ahead of fastify by the core XRPC fast path (auth, params and errors checked there alike)
      const metrics = await (await fetch(`${server.url}/metrics`)).text()
      const served = metrics.split('\n').find((l) => l.startsWith('xrpc_fast_path_requests_total{') && l.includes('nsid="app.bsky.feed.getTimeline"'))
      expect(Number(served?.split(' ').pop() ?? 0)).toBeGreaterThan(0)
    }
    await server?.close()
    await net?.close()
    await db?.cleanup()
  })

  it('serves its did:web document with an #atproto key and a #bsky_appview service', async () => {
    const res = await fetch(`${server.url}/.well-known/did.json`)
    const doc = (await res.json()) as { id: string; verificationMethod: { id: string; publicKeyMultibase: string }[]; service: { id: string; serviceEndpoint: string }[] }
    expect(doc.id).toBe(server.did)
    expect(server.did.startsWith('did:web:')).toBe(true)
    expect(doc.verificationMethod[0]!.id).toBe(`${server.did}#atproto`)
    expect(`did:key:${doc.verificationMethod[0]!.publicKeyMultibase}`).toBe(server.ctx.signingKey.did())
    expect(doc.service.find((s) => s.id === '#bsky_appview')?.serviceEndpoint).toBe(server.url)
  })

  it('profiles: counts, viewer state, image URLs', async () => {
    const { data } = await agentFor(server, bob).app.bsky.actor.getProfile({ actor: 'alice.test' })
    expect(data.did).toBe(alice.did)
    expect(data.handle).toBe('alice.test')
    expect(data.displayName).toBe('Alice Wonder')
    expect(data.description).toBe('down the hole')
    expect(data.followersCount).toBe(3)
    expect(data.followsCount).toBe(1)
    expect(data.postsCount).toBe(3)
    expect(data.viewer?.following).toBe(fBobAlice.uri)
    expect(data.viewer?.followedBy).toBe(fAliceBob.uri)
    expect(data.viewer?.muted).toBe(false)
    expect(data.avatar?.startsWith(`${server.url}/img/avatar/plain/${alice.did}/`)).toBe(true)

    const anon = await agentFor(server).app.bsky.actor.getProfile({ actor: alice.did })
    expect(anon.data.viewer).toBeUndefined()
    expect(anon.data.followersCount).toBe(3)

    const many = await agentFor(server, carol).app.bsky.actor.getProfiles({ actors: [bob.did, 'alice.test', 'nobody.test'] })
    expect(many.data.profiles.map((p) => p.did)).toEqual([bob.did, alice.did])
    expect(many.data.profiles[1]!.viewer?.following).toBeDefined()

    await expectXrpcError(agentFor(server).app.bsky.actor.getProfile({ actor: 'nobody.test' }), 'InvalidRequest', 400)
  })

  it('authenticated answers carry Atproto-Repo-Rev, the indexed rev of the viewer\'s repo (for read-after-write)', async () => {
    const asBob = await agentFor(server, bob).app.bsky.feed.getTimeline({})
    expect(asBob.headers['atproto-repo-rev']).toBe(bob.repo.commit.rev)
    const asCarol = await agentFor(server, carol).app.bsky.actor.getProfile({ actor: alice.did })
    expect(asCarol.headers['atproto-repo-rev']).toBe(carol.repo.commit.rev)
    const anon = await agentFor(server).app.bsky.actor.getProfile({ actor: alice.did })
    expect(anon.headers['atproto-repo-rev']).toBeUndefined()
  })

  it('images are fetched from the PDS once and served from the cache', async () => {
    const { data } = await agentFor(server).app.bsky.actor.getProfile({ actor: alice.did })
    const before = net.requests.filter((r) => r === 'getBlob').length
    const res1 = await fetch(data.avatar!)
    expect(res1.status).toBe(200)
    expect(res1.headers.get('content-type')).toBe('image/png')
    expect(new Uint8Array(await res1.arrayBuffer())).toEqual(PNG)
    const res2 = await fetch(data.avatar!)
    expect(new Uint8Array(await res2.arrayBuffer())).toEqual(PNG)
    expect(net.requests.filter((r) => r === 'getBlob').length).toBe(before + 1)
    const missing = await fetch(`${server.url}/img/avatar/plain/${alice.did}/bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku@jpeg`)
    expect(missing.status).toBe(404)
  })

  it('post thread: counts, viewer likes and reposts, replies and parents', async () => {
    const asBob = await agentFor(server, bob).app.bsky.feed.getPostThread({ uri: P1.uri })
    const thread = asBob.data.thread as AppBskyFeedDefs.ThreadViewPost
    expect(thread.post.uri).toBe(P1.uri)
    expect(thread.post.likeCount).toBe(2)
    expect(thread.post.repostCount).toBe(1)
    expect(thread.post.replyCount).toBe(1)
    expect(thread.post.quoteCount).toBe(1)
    expect(thread.post.viewer?.like).toBe(likeBob.uri)
    expect(thread.post.viewer?.repost).toBe(rpBob.uri)
    expect(thread.replies?.map((r) => (r as AppBskyFeedDefs.ThreadViewPost).post.uri)).toEqual([R1.uri])

    const asCarol = await agentFor(server, carol).app.bsky.feed.getPostThread({ uri: P1.uri })
    const t2 = asCarol.data.thread as AppBskyFeedDefs.ThreadViewPost
    expect(t2.post.viewer?.like).toBe(likeCarol.uri)
    expect(t2.post.viewer?.repost).toBeUndefined()

    const fromReply = await agentFor(server).app.bsky.feed.getPostThread({ uri: R1.uri })
    const t3 = fromReply.data.thread as AppBskyFeedDefs.ThreadViewPost
    expect((t3.parent as AppBskyFeedDefs.ThreadViewPost).post.uri).toBe(P1.uri)
    expect(t3.post.viewer).toBeUndefined()

    const noReplies = await agentFor(server).app.bsky.feed.getPostThread({ uri: P1.uri, depth: 0 })
    expect((noReplies.data.thread as AppBskyFeedDefs.ThreadViewPost).replies).toBeUndefined()

    await expectXrpcError(agentFor(server).app.bsky.feed.getPostThread({ uri: `at://${alice.did}/app.bsky.feed.post/3kaaaaaaaaaaa` }), 'NotFound')
  })

  it('timeline: followed accounts, reposts with their reason, own posts, newest first', async () => {
    const { data } = await agentFor(server, alice).app.bsky.feed.getTimeline({})
    expect(uris(data.feed)).toEqual([AR.uri, B1.uri, P2.uri, P1.uri, R1.uri, P1.uri])
    const reposted = data.feed[3]!
    expect(reposted.reason?.$type).toBe('app.bsky.feed.defs#reasonRepost')
    expect((reposted.reason as AppBskyFeedDefs.ReasonRepost).by.did).toBe(bob.did)
    expect((data.feed[4]!.reply?.parent as { uri: string }).uri).toBe(P1.uri)
    expect((data.feed[0]!.reply?.parent as { uri: string }).uri).toBe(D1.uri)

    // paging with opaque cursors gives the same items, once
    const seen: string[] = []
    let cursor: string | undefined
    for (let i = 0; i < 10; i++) {
      const page = await agentFor(server, alice).app.bsky.feed.getTimeline({ limit: 2, cursor })
      seen.push(...uris(page.data.feed))
      cursor = page.data.cursor
      if (!cursor) break
    }
    expect(seen).toEqual(uris(data.feed))

    await expectXrpcError(agentFor(server).app.bsky.feed.getTimeline({}), 'AuthenticationRequired', 401)
    await expectXrpcError(agentFor(server, alice).app.bsky.feed.getTimeline({ cursor: 'not-a-cursor!' }), 'InvalidRequest', 400)
  })

  it('author feed: every filter, pins and pagination', async () => {
    const feed = async (filter?: string, actor = alice.did) =>
      uris((await agentFor(server, carol).app.bsky.feed.getAuthorFeed({ actor, ...(filter ? { filter } : {}) })).data.feed)
    expect(await feed()).toEqual([AR.uri, P2.uri, P1.uri])
    expect(await feed('posts_with_replies')).toEqual([AR.uri, P2.uri, P1.uri])
    expect(await feed('posts_no_replies')).toEqual([P2.uri, P1.uri])
    expect(await feed('posts_with_media')).toEqual([P2.uri])
    expect(await feed('posts_and_author_threads')).toEqual([P2.uri, P1.uri])
    expect(await feed('posts_with_video')).toEqual([])
    expect(await feed(undefined, bob.did)).toEqual([B1.uri, P1.uri, R1.uri])

    const pages: string[] = []
    let cursor: string | undefined
    do {
      const res = await agentFor(server).app.bsky.feed.getAuthorFeed({ actor: 'alice.test', limit: 1, cursor })
      pages.push(...uris(res.data.feed))
      cursor = res.data.cursor
    } while (cursor)
    expect(pages).toEqual([AR.uri, P2.uri, P1.uri])
  })

  it('embeds: quotes and images', async () => {
    const { data } = await agentFor(server, bob).app.bsky.feed.getPosts({ uris: [Q1.uri, P2.uri, `at://${bob.did}/app.bsky.feed.post/3kaaaaaaaaaaa`] })
    expect(data.posts.map((p) => p.uri)).toEqual([Q1.uri, P2.uri])
    const q = data.posts[0]!.embed as { $type: string; record: { $type: string; uri: string; author: { handle: string }; value: { text: string }; likeCount: number } }
    expect(q.$type).toBe('app.bsky.embed.record#view')
    expect(q.record.$type).toBe('app.bsky.embed.record#viewRecord')
    expect(q.record.uri).toBe(P1.uri)
    expect(q.record.author.handle).toBe('alice.test')
    expect(q.record.value.text).toBe('hello world from alice')
    expect(q.record.likeCount).toBe(2)
    const img = data.posts[1]!.embed as { $type: string; images: { alt: string; thumb: string; fullsize: string; aspectRatio: unknown }[] }
    expect(img.$type).toBe('app.bsky.embed.images#view')
    expect(img.images[0]!.alt).toBe('a cat')
    expect(img.images[0]!.aspectRatio).toEqual({ width: 4, height: 3 })
    expect(img.images[0]!.thumb.startsWith(`${server.url}/img/feed_thumbnail/plain/${alice.did}/`)).toBe(true)
    expect(img.images[0]!.fullsize.startsWith(`${server.url}/img/feed_fullsize/plain/${alice.did}/`)).toBe(true)
  })

  it('likes, reposts, quotes and the viewer\'s own likes', async () => {
    const likes = await agentFor(server).app.bsky.feed.getLikes({ uri: P1.uri })
    expect(likes.data.likes.map((l) => l.actor.did)).toEqual([bob.did, carol.did])
    const reposts = await agentFor(server).app.bsky.feed.getRepostedBy({ uri: P1.uri })
    expect(reposts.data.repostedBy.map((a) => a.did)).toEqual([bob.did])
    const quotes = await agentFor(server).app.bsky.feed.getQuotes({ uri: P1.uri })
    expect(quotes.data.posts.map((p) => p.uri)).toEqual([Q1.uri])
    const mine = await agentFor(server, bob).app.bsky.feed.getActorLikes({ actor: bob.did })
    expect(uris(mine.data.feed)).toEqual([P1.uri])
    await expectXrpcError(agentFor(server, carol).app.bsky.feed.getActorLikes({ actor: bob.did }), 'InvalidRequest')
  })

  it('notifications: written at index time, read state, unread count', async () => {
    const agent = agentFor(server, alice)
    const { data } = await agent.app.bsky.notification.listNotifications({})
    const summary = data.notifications.map((n) => `${n.reason}:${n.author.handle}`).sort()
    expect(summary).toEqual(
      ['follow:bob.test', 'follow:carol.test', 'follow:dan.test', 'like:bob.test', 'like:carol.test', 'mention:carol.test', 'quote:carol.test', 'reply:bob.test', 'repost:bob.test'].sort(),
    )
    expect(data.notifications.every((n) => !n.isRead)).toBe(true)
    const replyNotif = data.notifications.find((n) => n.reason === 'reply')!
    expect(replyNotif.uri).toBe(R1.uri)
    expect(replyNotif.reasonSubject).toBe(P1.uri)
    expect((replyNotif.record as { text: string }).text).toBe('nice one')
    expect((await agent.app.bsky.notification.getUnreadCount({})).data.count).toBe(9)
    const onlyLikes = await agent.app.bsky.notification.listNotifications({ reasons: ['like'] })
    expect(onlyLikes.data.notifications.map((n) => n.uri).sort()).toEqual([likeBob.uri, likeCarol.uri].sort())

    const danNotifs = await agentFor(server, dan).app.bsky.notification.listNotifications({})
    expect(danNotifs.data.notifications.map((n) => `${n.reason}:${n.uri}`)).toEqual([`reply:${AR.uri}`])

    await agent.app.bsky.notification.updateSeen({ seenAt: now() })
    expect((await agent.app.bsky.notification.getUnreadCount({})).data.count).toBe(0)
    const after = await agent.app.bsky.notification.listNotifications({})
    expect(after.data.notifications.every((n) => n.isRead)).toBe(true)
    expect(after.data.seenAt).toBeDefined()
  })

  it('blocks apply in every view', async () => {
    const asEve = agentFor(server, eve)
    const prof = await asEve.app.bsky.actor.getProfile({ actor: alice.did })
    expect(prof.data.viewer?.blocking).toBe(blockEve.uri)
    expect(prof.data.viewer?.following).toBeUndefined()
    const other = await agentFor(server, alice).app.bsky.actor.getProfile({ actor: eve.did })
    expect(other.data.viewer?.blockedBy).toBe(true)

    const thread = await asEve.app.bsky.feed.getPostThread({ uri: P1.uri })
    expect(thread.data.thread.$type).toBe('app.bsky.feed.defs#blockedPost')
    await expectXrpcError(asEve.app.bsky.feed.getAuthorFeed({ actor: alice.did }), 'BlockedActor')
    await expectXrpcError(agentFor(server, alice).app.bsky.feed.getAuthorFeed({ actor: eve.did }), 'BlockedByActor')

    const quoted = await asEve.app.bsky.feed.getPosts({ uris: [Q1.uri, P1.uri] })
    expect(quoted.data.posts.map((p) => p.uri)).toEqual([Q1.uri])
    expect((quoted.data.posts[0]!.embed as { record: { $type: string } }).record.$type).toBe('app.bsky.embed.record#viewBlocked')

    // eve follows bob: his repost of alice and his reply to her are left out
    const tl = await asEve.app.bsky.feed.getTimeline({})
    expect(uris(tl.data.feed)).toEqual([B1.uri])

    const blocks = await asEve.app.bsky.graph.getBlocks({})
    expect(blocks.data.blocks.map((b) => b.did)).toEqual([alice.did])
    const bobsFollowers = await agentFor(server, alice).app.bsky.graph.getFollowers({ actor: bob.did })
    expect(bobsFollowers.data.followers.map((f) => f.did)).toEqual([alice.did])
    const bobsFollowersAnon = await agentFor(server).app.bsky.graph.getFollowers({ actor: bob.did })
    expect(bobsFollowersAnon.data.followers.map((f) => f.did)).toEqual([eve.did, alice.did])

    const rel = await agentFor(server).app.bsky.graph.getRelationships({ actor: eve.did, others: [alice.did, bob.did, 'nobody.test'] })
    const [ra, rb, rn] = rel.data.relationships as { did?: string; blocking?: string; following?: string; notFound?: boolean }[]
    expect(ra!.blocking).toBe(blockEve.uri)
    expect(rb!.following).toBeDefined()
    expect(rn!.notFound).toBe(true)
  })

  it('follows and followers', async () => {
    const followers = await agentFor(server).app.bsky.graph.getFollowers({ actor: 'alice.test' })
    expect(followers.data.subject.did).toBe(alice.did)
    expect(followers.data.followers.map((f) => f.did)).toEqual([dan.did, carol.did, bob.did])
    const page1 = await agentFor(server).app.bsky.graph.getFollowers({ actor: alice.did, limit: 2 })
    const page2 = await agentFor(server).app.bsky.graph.getFollowers({ actor: alice.did, limit: 2, cursor: page1.data.cursor })
    expect([...page1.data.followers, ...page2.data.followers].map((f) => f.did)).toEqual([dan.did, carol.did, bob.did])
    const follows = await agentFor(server).app.bsky.graph.getFollows({ actor: alice.did })
    expect(follows.data.follows.map((f) => f.did)).toEqual([bob.did])
  })

  it('search: posts and actors', async () => {
    const hello = await agentFor(server).app.bsky.feed.searchPosts({ q: 'hello' })
    expect(hello.data.posts.map((p) => p.uri)).toEqual([P1.uri])
    const byAuthor = await agentFor(server).app.bsky.feed.searchPosts({ q: 'picture', author: 'alice.test' })
    expect(byAuthor.data.posts.map((p) => p.uri)).toEqual([P2.uri])
    const none = await agentFor(server).app.bsky.feed.searchPosts({ q: 'picture', author: bob.did })
    expect(none.data.posts).toEqual([])
    const actors = await agentFor(server).app.bsky.actor.searchActors({ q: 'wonder' })
    expect(actors.data.actors.map((a) => a.did)).toEqual([alice.did])
    const byHandle = await agentFor(server).app.bsky.actor.searchActors({ q: 'carol' })
    expect(byHandle.data.actors.map((a) => a.did)).toEqual([carol.did])
    const ta = await agentFor(server).app.bsky.actor.searchActorsTypeahead({ q: 'ali' })
    expect(ta.data.actors.map((a) => a.did)).toEqual([alice.did])
    const ta2 = await agentFor(server).app.bsky.actor.searchActorsTypeahead({ q: 'bo' })
    expect(ta2.data.actors.map((a) => a.did)).toEqual([bob.did])
    // suggestions: most-followed first, never someone already followed, never oneself
    const sugg = await agentFor(server, carol).app.bsky.actor.getSuggestions({})
    const suggested = sugg.data.actors.map((a) => a.did)
    expect(suggested[0]).toBe(bob.did)
    expect(suggested).not.toContain(alice.did)
    expect(suggested).not.toContain(carol.did)
  })

  it('mutes: private to the viewer, applied to timelines and notifications', async () => {
    const agent = agentFor(server, alice)
    await agent.app.bsky.graph.muteActor({ actor: 'bob.test' })
    expect((await agent.app.bsky.graph.getMutes({})).data.mutes.map((m) => m.did)).toEqual([bob.did])
    expect((await agent.app.bsky.actor.getProfile({ actor: bob.did })).data.viewer?.muted).toBe(true)
    expect((await agentFor(server, carol).app.bsky.actor.getProfile({ actor: bob.did })).data.viewer?.muted).toBe(false)
    expect(uris((await agent.app.bsky.feed.getTimeline({})).data.feed)).toEqual([AR.uri, P2.uri, P1.uri])
    const notifs = await agent.app.bsky.notification.listNotifications({})
    expect(notifs.data.notifications.filter((n) => n.author.did === bob.did)).toEqual([])
    expect(notifs.data.notifications.length).toBe(5)
    await agent.app.bsky.graph.unmuteActor({ actor: bob.did })
    expect((await agent.app.bsky.graph.getMutes({})).data.mutes).toEqual([])
    expect((await agent.app.bsky.feed.getTimeline({})).data.feed.length).toBe(6)
    await expectXrpcError(agentFor(server).app.bsky.graph.muteActor({ actor: bob.did }), 'AuthenticationRequired', 401)
  })

  it('feed generators, lists, starter packs and custom feeds', async () => {
    const fgDid = net.registerService('#bsky_fg', 'BskyFeedGenerator', net.pdsUrl)
    const gen = await net.create(alice, 'app.bsky.feed.generator', { did: fgDid, displayName: 'Cats', description: 'all the cats', createdAt: now() }, 'cats')
    net.feeds.set(gen.uri, [P2.uri, B1.uri, P1.uri])
    const genLike = await net.create(bob, 'app.bsky.feed.like', like(gen))
    const list = await net.create(alice, 'app.bsky.graph.list', { name: 'Friends', purpose: 'app.bsky.graph.defs#curatelist', createdAt: now() })
    await net.create(alice, 'app.bsky.graph.listitem', { subject: bob.did, list: list.uri, createdAt: now() })
    const pack = await net.create(alice, 'app.bsky.graph.starterpack', { name: 'Start here', list: list.uri, feeds: [{ uri: gen.uri }], createdAt: now() })
    const modlist = await net.create(eve, 'app.bsky.graph.list', { name: 'Nope', purpose: 'app.bsky.graph.defs#modlist', createdAt: now() })
    await net.create(eve, 'app.bsky.graph.listitem', { subject: carol.did, list: modlist.uri, createdAt: now() })
    const lb = await net.create(eve, 'app.bsky.graph.listblock', { subject: modlist.uri, createdAt: now() })
    await caughtUp(server, net)

    const gens = await agentFor(server, bob).app.bsky.feed.getFeedGenerators({ feeds: [gen.uri] })
    expect(gens.data.feeds[0]!.displayName).toBe('Cats')
    expect(gens.data.feeds[0]!.likeCount).toBe(1)
    expect(gens.data.feeds[0]!.viewer?.like).toBe(genLike.uri)
    const one = await agentFor(server).app.bsky.feed.getFeedGenerator({ feed: gen.uri })
    expect(one.data.isOnline).toBe(true)
    expect(one.data.isValid).toBe(true)
    expect((await agentFor(server).app.bsky.feed.getActorFeeds({ actor: alice.did })).data.feeds.map((f) => f.uri)).toEqual([gen.uri])

    const custom = await agentFor(server, carol).app.bsky.feed.getFeed({ feed: gen.uri })
    expect(uris(custom.data.feed)).toEqual([P2.uri, B1.uri, P1.uri])
    expect(custom.data.feed[0]!.feedContext).toBe('ctx-0')
    // a token for the AppView itself identifies the viewer but is not passed on
    expect(net.feedAuth.at(-1)).toBeUndefined()
    expect(custom.data.feed[2]!.post.viewer?.like).toBe(likeCarol.uri)
    await expectXrpcError(agentFor(server).app.bsky.feed.getFeed({ feed: `at://${alice.did}/app.bsky.feed.generator/nope` }), 'UnknownFeed', 400)
    const paged = await agentFor(server).app.bsky.feed.getFeed({ feed: gen.uri, limit: 2 })
    expect(paged.data.cursor).toBe('2')
    // eve blocks alice: alice's posts are left out of any feed
    expect(uris((await agentFor(server, eve).app.bsky.feed.getFeed({ feed: gen.uri })).data.feed)).toEqual([B1.uri])
    // a PDS-minted token for the feed generator is checked and forwarded
    const viaPds = await agentFor(server, carol, { aud: fgDid, lxm: 'app.bsky.feed.getFeedSkeleton' }).app.bsky.feed.getFeed({ feed: gen.uri })
    expect(viaPds.data.feed.length).toBe(3)
    expect(net.feedAuth.at(-1)?.startsWith('Bearer ')).toBe(true)

    const gl = await agentFor(server).app.bsky.graph.getList({ list: list.uri })
    expect(gl.data.list.name).toBe('Friends')
    expect(gl.data.list.listItemCount).toBe(1)
    expect(gl.data.items.map((i) => i.subject.did)).toEqual([bob.did])
    expect((await agentFor(server).app.bsky.graph.getLists({ actor: alice.did })).data.lists.map((l) => l.uri)).toEqual([list.uri])
    const lf = await agentFor(server).app.bsky.feed.getListFeed({ list: list.uri })
    expect(uris(lf.data.feed)).toEqual([B1.uri, R1.uri])

    const sp = await agentFor(server).app.bsky.graph.getStarterPack({ starterPack: pack.uri })
    expect(sp.data.starterPack.list?.uri).toBe(list.uri)
    expect(sp.data.starterPack.listItemsSample?.map((i) => i.subject.did)).toEqual([bob.did])
    expect(sp.data.starterPack.feeds?.map((f) => f.uri)).toEqual([gen.uri])
    const sps = await agentFor(server).app.bsky.graph.getStarterPacks({ uris: [pack.uri] })
    expect(sps.data.starterPacks[0]!.listItemCount).toBe(1)
    expect((await agentFor(server).app.bsky.graph.getActorStarterPacks({ actor: alice.did })).data.starterPacks.length).toBe(1)

    // eve subscribes to a moderation list with carol on it: carol is blocked for eve
    const carolForEve = await agentFor(server, eve).app.bsky.actor.getProfile({ actor: carol.did })
    expect(carolForEve.data.viewer?.blockingByList?.uri).toBe(modlist.uri)
    const listBlocks = await agentFor(server, eve).app.bsky.graph.getListBlocks({})
    expect(listBlocks.data.lists.map((l) => l.uri)).toEqual([modlist.uri])
    expect(listBlocks.data.lists[0]!.viewer?.blocked).toBe(lb.uri)
    const eveOnP1 = await agentFor(server, eve).app.bsky.feed.getLikes({ uri: P1.uri })
    expect(eveOnP1.data.likes.map((l) => l.actor.did)).toEqual([bob.did])
  })

  it('threadgates and postgates', async () => {
    const P3 = await net.create(alice, 'app.bsky.feed.post', post('gated thread'))
    const rkey = P3.uri.split('/').pop()!
    await net.create(alice, 'app.bsky.feed.threadgate', { post: P3.uri, allow: [], createdAt: now() }, rkey)
    const RC = await net.create(carol, 'app.bsky.feed.post', reply('let me in', P3, P3))
    const RA = await net.create(alice, 'app.bsky.feed.post', reply('my own thread', P3, P3))
    const P4 = await net.create(alice, 'app.bsky.feed.post', post('no quotes please'))
    await net.create(alice, 'app.bsky.feed.postgate', { post: P4.uri, embeddingRules: [{ $type: 'app.bsky.feed.postgate#disableRule' }], createdAt: now() }, P4.uri.split('/').pop()!)
    const Q4 = await net.create(carol, 'app.bsky.feed.post', quote('quoting anyway', P4))
    await caughtUp(server, net)

    const t = await agentFor(server, carol).app.bsky.feed.getPostThread({ uri: P3.uri })
    const thread = t.data.thread as AppBskyFeedDefs.ThreadViewPost
    expect(thread.replies?.map((r) => (r as AppBskyFeedDefs.ThreadViewPost).post.uri)).toEqual([RA.uri])
    expect(thread.post.viewer?.replyDisabled).toBe(true)
    expect(t.data.threadgate?.uri).toBeDefined()
    expect(thread.post.threadgate?.record).toBeDefined()
    const asAlice = await agentFor(server, alice).app.bsky.feed.getPostThread({ uri: P3.uri })
    expect((asAlice.data.thread as AppBskyFeedDefs.ThreadViewPost).post.viewer?.replyDisabled).toBe(false)
    // the gated reply notified nobody
    const notifs = await agentFor(server, alice).app.bsky.notification.listNotifications({})
    expect(notifs.data.notifications.some((n) => n.uri === RC.uri)).toBe(false)

    const q = await agentFor(server).app.bsky.feed.getPosts({ uris: [Q4.uri] })
    expect((q.data.posts[0]!.embed as { record: { $type: string } }).record.$type).toBe('app.bsky.embed.record#viewDetached')
    const p4 = await agentFor(server, carol).app.bsky.feed.getPosts({ uris: [P4.uri] })
    expect(p4.data.posts[0]!.viewer?.embeddingDisabled).toBe(true)
  })

  it('deletes take records out of views, counts and notifications', async () => {
    await net.delete(carol, likeCarol.uri)
    await net.delete(bob, R1.uri)
    await caughtUp(server, net)
    const t = await agentFor(server).app.bsky.feed.getPostThread({ uri: P1.uri })
    const thread = t.data.thread as AppBskyFeedDefs.ThreadViewPost
    expect(thread.post.likeCount).toBe(1)
    expect(thread.post.replyCount).toBe(0)
    expect(thread.replies).toEqual([])
    expect((await agentFor(server).app.bsky.feed.getLikes({ uri: P1.uri })).data.likes.map((l) => l.actor.did)).toEqual([bob.did])
    const notifs = await agentFor(server, alice).app.bsky.notification.listNotifications({})
    const uris2 = notifs.data.notifications.map((n) => n.uri)
    expect(uris2).not.toContain(likeCarol.uri)
    expect(uris2).not.toContain(R1.uri)
    expect((await agentFor(server).app.bsky.actor.getProfile({ actor: bob.did })).data.postsCount).toBe(1)
    await expectXrpcError(agentFor(server).app.bsky.feed.getPostThread({ uri: R1.uri }), 'NotFound')
  })

  it('updates: a new profile shows up, and search follows it', async () => {
    await net.update(alice, `at://${alice.did}/app.bsky.actor.profile/self`, { displayName: 'Alice Liddell', avatar })
    await caughtUp(server, net)
    const { data } = await agentFor(server).app.bsky.actor.getProfile({ actor: alice.did })
    expect(data.displayName).toBe('Alice Liddell')
    expect(data.description).toBeUndefined()
    expect((await agentFor(server).app.bsky.actor.searchActors({ q: 'liddell' })).data.actors.map((a) => a.did)).toEqual([alice.did])
    expect((await agentFor(server).app.bsky.actor.searchActors({ q: 'wonder' })).data.actors).toEqual([])

    // a pinned post: on the profile, and first in the author feed when pins are asked for
    await net.update(alice, `at://${alice.did}/app.bsky.actor.profile/self`, { displayName: 'Alice Liddell', avatar, pinnedPost: { uri: P1.uri, cid: P1.cid } })
    await caughtUp(server, net)
    expect((await agentFor(server).app.bsky.actor.getProfile({ actor: alice.did })).data.pinnedPost?.uri).toBe(P1.uri)
    const pinned = await agentFor(server, bob).app.bsky.feed.getAuthorFeed({ actor: alice.did, includePins: true, filter: 'posts_no_replies' })
    expect(pinned.data.feed[0]!.post.uri).toBe(P1.uri)
    expect(pinned.data.feed[0]!.reason?.$type).toBe('app.bsky.feed.defs#reasonPin')
    expect(pinned.data.feed[0]!.post.viewer?.pinned).toBe(true)
    const unpinned = await agentFor(server).app.bsky.feed.getAuthorFeed({ actor: alice.did, filter: 'posts_no_replies' })
    expect(unpinned.data.feed[0]!.reason).toBeUndefined()
  })

  it('deactivation hides an account\'s content; reactivation restores it', async () => {
    await caughtUp(server, net, net.emitAccount(dan, false, 'deactivated'))
    await expectXrpcError(agentFor(server).app.bsky.actor.getProfile({ actor: dan.did }), 'AccountDeactivated', 400)
    await expectXrpcError(agentFor(server).app.bsky.feed.getPostThread({ uri: D1.uri }), 'NotFound')
    const feed = await agentFor(server).app.bsky.feed.getAuthorFeed({ actor: alice.did, filter: 'posts_with_replies' })
    const ar = feed.data.feed.find((f) => f.post.uri === AR.uri)!
    expect(ar.reply?.parent.$type).toBe('app.bsky.feed.defs#notFoundPost')
    const followers = await agentFor(server).app.bsky.graph.getFollowers({ actor: alice.did })
    expect(followers.data.followers.map((f) => f.did)).not.toContain(dan.did)
    const notifs = await agentFor(server, alice).app.bsky.notification.listNotifications({})
    expect(notifs.data.notifications.some((n) => n.author.did === dan.did)).toBe(false)
    expect((await agentFor(server).app.bsky.actor.searchActorsTypeahead({ q: 'dan' })).data.actors).toEqual([])

    await caughtUp(server, net, net.emitAccount(dan, false, 'takendown'))
    await expectXrpcError(agentFor(server).app.bsky.actor.getProfile({ actor: dan.did }), 'AccountTakedown', 400)

    await caughtUp(server, net, net.emitAccount(dan, true))
    expect((await agentFor(server).app.bsky.actor.getProfile({ actor: dan.did })).data.displayName).toBe('Dan')
    const back = await agentFor(server).app.bsky.feed.getPostThread({ uri: D1.uri })
    expect((back.data.thread as AppBskyFeedDefs.ThreadViewPost).post.uri).toBe(D1.uri)
  })

  it('service auth: audience, method, expiry and signature are checked', async () => {
    await expectXrpcError(agentFor(server, alice, { aud: 'did:web:other.example#bsky_appview' }).app.bsky.feed.getTimeline({}), 'BadJwtAudience', 401)
    await expectXrpcError(agentFor(server, alice, { lxm: 'app.bsky.feed.getAuthorFeed' }).app.bsky.feed.getTimeline({}), 'BadJwtLexiconMethod', 401)
    await expectXrpcError(agentFor(server, alice, { expired: true }).app.bsky.feed.getTimeline({}), 'JwtExpired', 401)
    // a token signed by bob's key but claiming to be alice
    const forged = { ...bob, did: alice.did }
    await expectXrpcError(agentFor(server, forged).app.bsky.feed.getTimeline({}), 'BadJwtSignature', 401)
    // the bare DID is accepted as an audience too
    const bare = await agentFor(server, alice, { aud: server.did }).app.bsky.feed.getTimeline({ limit: 1 })
    expect(bare.data.feed.length).toBe(1)
    // a bad token on a public endpoint is still refused, not served anonymously
    await expectXrpcError(agentFor(server, alice, { expired: true }).app.bsky.actor.getProfile({ actor: alice.did }), 'JwtExpired', 401)
  })

  it('a read after a write sees it (read workers keep no result across a change)', async () => {
    const E1 = await net.create(alice, 'app.bsky.feed.post', post('an echo'))
    await caughtUp(server, net)
    const thread = async () => (await agentFor(server, bob).app.bsky.feed.getPostThread({ uri: E1.uri })).data.thread as AppBskyFeedDefs.ThreadViewPost
    const timeline = async () => (await agentFor(server, bob).app.bsky.feed.getTimeline({ limit: 5 })).data.feed
    // read twice (the second read can be answered from what the first one read)
    for (let i = 0; i < 2; i++) {
      const t = await thread()
      expect(t.post.likeCount).toBe(0)
      expect(t.replies).toEqual([])
      expect(t.post.viewer?.like).toBeUndefined()
      expect((await timeline())[0]!.post.uri).toBe(E1.uri)
    }
    const L = await net.create(bob, 'app.bsky.feed.like', like(E1))
    const R = await net.create(bob, 'app.bsky.feed.post', reply('an answer', E1, E1))
    await caughtUp(server, net)
    const t = await thread()
    expect(t.post.likeCount).toBe(1)
    expect(t.post.replyCount).toBe(1)
    expect(t.post.viewer?.like).toBe(L.uri)
    expect(t.replies?.map((r) => (r as AppBskyFeedDefs.ThreadViewPost).post.uri)).toEqual([R.uri])
    expect((await timeline())[0]!.post.uri).toBe(R.uri)
    await net.delete(bob, L.uri)
    await caughtUp(server, net)
    expect((await thread()).post.likeCount).toBe(0)
  })

  it('a read after a write sees it: follows, profile edits, reposts, blocks; kept results survive writes of other accounts', async () => {
    const E2 = await net.create(dan, 'app.bsky.feed.post', post('dan again'))
    await caughtUp(server, net)
    const profile = async () => (await agentFor(server, carol).app.bsky.actor.getProfile({ actor: dan.did })).data
    const thread = async () => (await agentFor(server, carol).app.bsky.feed.getPostThread({ uri: E2.uri })).data.thread
    // read twice (the second read can be answered from what the first one read)
    for (let i = 0; i < 2; i++) {
      const p = await profile()
      expect(p.viewer?.following).toBeUndefined()
      expect(p.displayName).toBe('Dan')
      const t = (await thread()) as AppBskyFeedDefs.ThreadViewPost
      expect(t.post.repostCount).toBe(0)
      expect(t.post.author.displayName).toBe('Dan')
    }
    if (opts.readWorkers) {
      // the workers read the file's pages through a memory map (no pread and copy per page)
      for (const s of await server.ctx.readPool!.cacheStats()) expect(s.mmapBytes).toBe(READ_MMAP_BYTES)
      // ... as much of it as SQLite maps at most (a larger request is cut to that)
      const probeDir = mkdtempSync(join(tmpdir(), 'mmap-probe-'))
      const probe = openSqlite<any>(join(probeDir, 'probe.sqlite'))
      expect(READ_MMAP_BYTES).toBe(Number(probe.sqlite!.pragma(`mmap_size = ${2 ** 40}`, { simple: true })))
      await probe.close()
      rmSync(probeDir, { recursive: true, force: true })
      // another account's post: every statement of the thread's answer is kept (none runs again)
      await net.create(eve, 'app.bsky.feed.post', post('unrelated'))
      await caughtUp(server, net)
      const total = async () => (await server.ctx.readPool!.cacheStats()).reduce((a, b) => ({ hits: a.hits + b.hits, misses: a.misses + b.misses }), { hits: 0, misses: 0 })
      const before = await total()
      expect(((await thread()) as AppBskyFeedDefs.ThreadViewPost).post.author.displayName).toBe('Dan')
      const after = await total()
      expect(after.misses).toBe(before.misses)
      expect(after.hits).toBeGreaterThan(before.hits)
    }
    const F = await net.create(carol, 'app.bsky.graph.follow', follow(dan.did))
    await net.update(dan, `at://${dan.did}/app.bsky.actor.profile/self`, { displayName: 'Daniel' })
    const RP = await net.create(carol, 'app.bsky.feed.repost', repost(E2))
    await caughtUp(server, net)
    const p = await profile()
    expect(p.viewer?.following).toBe(F.uri)
    expect(p.displayName).toBe('Daniel')
    const t = (await thread()) as AppBskyFeedDefs.ThreadViewPost
    expect(t.post.repostCount).toBe(1)
    expect(t.post.viewer?.repost).toBe(RP.uri)
    expect(t.post.author.displayName).toBe('Daniel')
    const BL = await net.create(carol, 'app.bsky.graph.block', block(dan.did))
    await caughtUp(server, net)
    expect((await profile()).viewer?.blocking).toBe(BL.uri)
    expect((await thread()).$type).toBe('app.bsky.feed.defs#blockedPost')
    await net.delete(carol, BL.uri)
    await net.delete(carol, F.uri)
    await net.delete(carol, RP.uri)
    await caughtUp(server, net)
    const p2 = await profile()
    expect(p2.viewer?.blocking).toBeUndefined()
    expect(p2.viewer?.following).toBeUndefined()
    expect(((await thread()) as AppBskyFeedDefs.ThreadViewPost).post.repostCount).toBe(0)
  })
}

describe('AppView API on SQLite', () => apiSuite('sqlite'))
describe('AppView API on SQLite, reads in worker threads', () => apiSuite('sqlite', { readWorkers: 2 }))
describe.runIf(!!PG_URL)('AppView API on PostgreSQL', () => apiSuite('postgres'))
