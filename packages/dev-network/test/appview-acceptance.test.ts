/**
 * AppView acceptance (issue 5) on the dev network: four accounts on our PDS follow, post, reply, quote,
 * like, repost, block and mute; every app.bsky call goes through the PDS's proxy (service-auth JWT) to the
 * AppView, which indexes what the relay forwards. The views must show exactly the expected items, order and
 * counts; deletes, blocks, mutes and deactivation / reactivation must show up.
 *
 * Run twice: AppView on SQLite (the default) and on PostgreSQL (STRATOS_TEST_PG_URL, a throwaway schema).
 * The AppView validates every output against the lexicons (APPVIEW_VALIDATE_OUTPUT=true), and every
 * app.bsky response the test receives is validated again here with core's validateOutput.
 * Indexing is waited for by polling the views (eventually(), bounded to 20 s), never by fixed sleeps; only
 * the read-after-write check pauses the AppView's ingestion (in process) to make the AppView lag behind.
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AtpAgent, AtUri, type AppBskyActorDefs, type AppBskyFeedDefs, type AppBskyNotificationListNotifications } from '@atproto/api'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openPostgres } from '@stratos/core/db'
import { validateOutput } from '@stratos/core/lexicon'
import { freePortBase, startDevNetwork, waitForHealth, type DevNetwork } from '@stratos/dev-network'
import { eventually } from './_eventually.js'

const PG_URL = process.env.STRATOS_TEST_PG_URL

if (!PG_URL) {
  console.log(
    'SKIPPED: the PostgreSQL run of the AppView acceptance test (set STRATOS_TEST_PG_URL=postgres://... to run it)',
  )
}

// ---------------------------------------------------------------------------------------------------------
// helpers

/** An XRPC error the call must fail with (name), through the proxy. */
async function expectXrpcError(call: Promise<unknown>, error: string): Promise<void> {
  let caught: unknown
  try {
    await call
  } catch (err) {
    caught = err
  }
  expect(caught, `expected the call to fail with ${error}`).toBeDefined()
  expect((caught as { error?: string }).error).toBe(error)
}

// a 1x1 PNG
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
)

interface Ref {
  uri: string
  cid: string
}

interface Account {
  name: string
  handle: string
  did: string
  agent: AtpAgent
}

type Json = Record<string, any>

/** Names of the tables in a PostgreSQL schema. */
async function pgTables(schema: string): Promise<string[]> {
  const admin = await openPostgres<any>(PG_URL!, { poolSize: 1 })
  try {
    const rows = await admin.db
      .selectFrom('information_schema.tables')
      .select('table_name')
      .where('table_schema', '=', schema)
      .execute()
    return rows.map((r: { table_name: string }) => r.table_name)
  } finally {
    await admin.close()
  }
}

// ---------------------------------------------------------------------------------------------------------

function acceptance(dialect: 'sqlite' | 'postgres') {
  let dir: string
  let network: DevNetwork
  let schema: string | undefined
  let alice: Account, bob: Account, carol: Account, dan: Account

  /** uri / did → a short label, so that failures read "A1 reposted by bob" instead of at:// URIs */
  const names = new Map<string, string>()
  const name = (uriOrDid: string | undefined) => (uriOrDid === undefined ? undefined : (names.get(uriOrDid) ?? uriOrDid))

  /** every app.bsky response received, validated against the lexicons with core's validateOutput */
  const validated = new Map<string, number>()
  const invalid: string[] = []
  const validatingFetch: typeof fetch = async (input, init) => {
    const res = await fetch(input, init)
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url)
    const nsid = /^\/xrpc\/(app\.bsky\.[A-Za-z0-9.]+)$/.exec(url.pathname)?.[1]
    if (!nsid || !res.ok) return res
    const text = await res.clone().text()
    try {
      if (text.length === 0) validateOutput(nsid, undefined, undefined)
      else validateOutput(nsid, res.headers.get('content-type') ?? undefined, JSON.parse(text))
      validated.set(nsid, (validated.get(nsid) ?? 0) + 1)
    } catch (err) {
      const msg = `${nsid}: ${(err as Error).message}`
      invalid.push(msg)
      throw new Error(`output does not validate: ${msg}`)
    }
    return res
  }

  // timestamps: one second apart, an hour ago (so createdAt decides the order, not indexing time)
  const base = Date.now() - 3_600_000
  const t = (i: number) => new Date(base + i * 1000).toISOString()

  async function signup(who: string): Promise<Account> {
    const agent = new AtpAgent({ service: network.urls.pds, fetch: validatingFetch })
    const handle = `${who}.test`
    await agent.createAccount({ handle, email: `${who}@example.com`, password: `${who}-password` })
    const did = agent.session!.did
    names.set(did, who)
    return { name: who, handle, did, agent }
  }

  async function create(who: Account, collection: string, record: Json, label: string, rkey?: string): Promise<Ref> {
    const res = await who.agent.com.atproto.repo.createRecord({
      repo: who.did,
      collection,
      record: { $type: collection, ...record },
      ...(rkey ? { rkey } : {}),
    })
    names.set(res.data.uri, label)
    return { uri: res.data.uri, cid: res.data.cid }
  }

  async function remove(who: Account, ref: Ref): Promise<void> {
    const u = new AtUri(ref.uri)
    await who.agent.com.atproto.repo.deleteRecord({ repo: who.did, collection: u.collection, rkey: u.rkey })
  }

  const follow = (who: Account, subject: Account, at: number) =>
    create(who, 'app.bsky.graph.follow', { subject: subject.did, createdAt: t(at) }, `follow ${who.name}→${subject.name}`)
  const post = (who: Account, label: string, at: number, extra: Json = {}) =>
    create(who, 'app.bsky.feed.post', { text: `${label} by ${who.name}`, createdAt: t(at), ...extra }, label)
  const reply = (who: Account, label: string, at: number, parent: Ref, root: Ref) =>
    post(who, label, at, { reply: { root, parent } })
  const like = (who: Account, subject: Ref, at: number) =>
    create(who, 'app.bsky.feed.like', { subject, createdAt: t(at) }, `like ${who.name}→${name(subject.uri)}`)
  const repost = (who: Account, subject: Ref, at: number) =>
    create(who, 'app.bsky.feed.repost', { subject, createdAt: t(at) }, `repost ${who.name}→${name(subject.uri)}`)

  // summaries of views, in labels

  function feed(items: AppBskyFeedDefs.FeedViewPost[]): string[] {
    return items.map((item) => {
      const reason = item.reason as Json | undefined
      if (reason?.$type === 'app.bsky.feed.defs#reasonRepost') return `${name(item.post.uri)} reposted by ${name(reason.by.did)}`
      expect(reason, `unexpected reason on ${name(item.post.uri)}`).toBeUndefined()
      return name(item.post.uri)!
    })
  }

  const timeline = async (who: Account) => feed((await who.agent.getTimeline({ limit: 100 })).data.feed)
  const authorFeed = async (who: Account, actor: Account, filter?: string) =>
    feed((await who.agent.getAuthorFeed({ actor: actor.handle, limit: 100, ...(filter ? { filter } : {}) })).data.feed)

  function replyTree(node: Json): Json | string {
    if (node.$type === 'app.bsky.feed.defs#blockedPost') return `blocked ${name(node.uri)}`
    if (node.$type === 'app.bsky.feed.defs#notFoundPost') return `notFound ${name(node.uri)}`
    expect(node.$type).toBe('app.bsky.feed.defs#threadViewPost')
    const out: Json = { post: name(node.post.uri) }
    if (node.replies?.length) out.replies = node.replies.map(replyTree)
    return out
  }

  function parentChain(node: Json): Json | string {
    if (node.$type === 'app.bsky.feed.defs#blockedPost') return `blocked ${name(node.uri)}`
    if (node.$type === 'app.bsky.feed.defs#notFoundPost') return `notFound ${name(node.uri)}`
    const out: Json = { post: name(node.post.uri) }
    if (node.parent) out.parent = parentChain(node.parent)
    return out
  }

  async function thread(who: Account, uri: string): Promise<{ tree: Json | string; parents?: Json | string; root: Json }> {
    const res = await who.agent.getPostThread({ uri })
    const node = res.data.thread as Json
    return { tree: replyTree(node), parents: node.parent ? parentChain(node.parent) : undefined, root: node }
  }

  function profile(p: AppBskyActorDefs.ProfileViewDetailed) {
    return {
      handle: p.handle,
      displayName: p.displayName,
      followers: p.followersCount,
      follows: p.followsCount,
      posts: p.postsCount,
      viewer: {
        following: name(p.viewer?.following),
        followedBy: name(p.viewer?.followedBy),
        blocking: name(p.viewer?.blocking),
        blockedBy: p.viewer?.blockedBy,
        muted: p.viewer?.muted,
      },
    }
  }
  const getProfile = async (who: Account, actor: Account) => profile((await who.agent.getProfile({ actor: actor.handle })).data)

  function notification(n: AppBskyNotificationListNotifications.Notification): string {
    const on = n.reasonSubject ? ` on ${name(n.reasonSubject)}` : ''
    return `${n.reason} ${name(n.uri)} by ${name(n.author.did)}${on}${n.isRead ? ' (read)' : ''}`
  }
  const notifications = async (who: Account) => (await who.agent.listNotifications({ limit: 100 })).data.notifications.map(notification)
  const unread = async (who: Account) => (await who.agent.countUnreadNotifications()).data.count

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `stratos-appview-acceptance-${dialect}-`))
    const appview: Record<string, string> = { APPVIEW_VALIDATE_OUTPUT: 'true' }
    if (dialect === 'postgres') {
      schema = `stratos_acceptance_${process.pid}_${randomBytes(4).toString('hex')}`
      appview.APPVIEW_DB_URL = PG_URL!
      appview.APPVIEW_DB_SCHEMA = schema
    }
    network = await startDevNetwork({ dataDir: dir, portBase: await freePortBase(), logLevel: 'silent', env: { appview } })
    await waitForHealth(network.urls)
    expect(network.appview.ctx.config.validateOutput).toBe(true)
    expect(network.appview.ctx.config.dbUrl.startsWith('postgres')).toBe(dialect === 'postgres')
    if (schema) {
      // the AppView's tables are in the throwaway schema
      const tables = await pgTables(schema)
      expect(tables).toContain('post')
      expect(tables).toContain('notification')
    }

    alice = await signup('alice')
    bob = await signup('bob')
    carol = await signup('carol')
    dan = await signup('dan')
  }, 90_000)

  afterAll(async () => {
    await network?.close()
    if (schema && PG_URL) {
      const admin = await openPostgres(PG_URL, { poolSize: 1 })
      try {
        await admin.db.schema.dropSchema(schema).ifExists().cascade().execute()
      } finally {
        await admin.close()
      }
      expect(await pgTables(schema)).toEqual([])
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  // records of the scenario (createdAt = t(n), n in brackets):
  //   follows  bob→alice [1], carol→alice [2], dan→alice [3], alice→bob [4], bob→carol [5], bob→dan [6], alice→dan [7]
  //   posts    A1 [10]; A2 image [11]; B1 reply A1 [12]; A3 reply B1 [13]; C1 quotes A1 [14]; D1 [15];
  //            D2 reply A1 [16]; C2 [17]; B2 [18]; C3 reply B2 [28]; B3 quotes C1 [31]; A4 reply D1 [32]
  //   likes    bob→A1 [20], carol→A1 [21], dan→A1 [22], alice→B1 [23], dan→B2 [27]
  //   reposts  bob→A1 [24], carol→A2 [25], alice→C1 [26], bob→C2 [29]
  //   then: alice reads notifications up to t(19); alice mutes dan; bob blocks dan [40]; carol deletes C2 and
  //   her like, bob unfollows carol and deletes B1; carol deactivates, then reactivates and posts C4 [41];
  //   alice unmutes dan
  let fBA: Ref, fCA: Ref, fDA: Ref, fAB: Ref, fBC: Ref, fBD: Ref, fAD: Ref
  let A1: Ref, A2: Ref, A3: Ref, A4: Ref, B1: Ref, B2: Ref, B3: Ref, C1: Ref, C2: Ref, C3: Ref, D1: Ref, D2: Ref
  let lB: Ref, lC: Ref, lD: Ref, lA: Ref, lDB: Ref, rB: Ref, rC: Ref, rA: Ref, rB2: Ref, blk: Ref

  it('indexes follows, posts, replies, quotes, likes and reposts and shows them exactly', async () => {
    for (const a of [alice, bob, carol, dan]) {
      await create(a, 'app.bsky.actor.profile', { displayName: a.name.toUpperCase() }, `profile ${a.name}`, 'self')
    }
    fBA = await follow(bob, alice, 1)
    fCA = await follow(carol, alice, 2)
    fDA = await follow(dan, alice, 3)
    fAB = await follow(alice, bob, 4)
    fBC = await follow(bob, carol, 5)
    fBD = await follow(bob, dan, 6)
    fAD = await follow(alice, dan, 7)
    A1 = await post(alice, 'A1', 10)
    const upload = await alice.agent.uploadBlob(PNG, { encoding: 'image/png' })
    A2 = await post(alice, 'A2', 11, {
      embed: { $type: 'app.bsky.embed.images', images: [{ image: upload.data.blob, alt: 'a pixel' }] },
    })
    B1 = await reply(bob, 'B1', 12, A1, A1)
    A3 = await reply(alice, 'A3', 13, B1, A1)
    C1 = await post(carol, 'C1', 14, { embed: { $type: 'app.bsky.embed.record', record: A1 } })
    D1 = await post(dan, 'D1', 15)
    D2 = await reply(dan, 'D2', 16, A1, A1)
    C2 = await post(carol, 'C2', 17)
    B2 = await post(bob, 'B2', 18)
    lB = await like(bob, A1, 20)
    lC = await like(carol, A1, 21)
    lD = await like(dan, A1, 22)
    lA = await like(alice, B1, 23)
    rB = await repost(bob, A1, 24)
    rC = await repost(carol, A2, 25)
    rA = await repost(alice, C1, 26)
    lDB = await like(dan, B2, 27)
    C3 = await reply(carol, 'C3', 28, B2, B2)
    rB2 = await repost(bob, C2, 29)
    B3 = await post(bob, 'B3', 31, { embed: { $type: 'app.bsky.embed.record', record: C1 } })
    A4 = await reply(alice, 'A4', 32, D1, D1)

    await eventually(async () => {
      // timelines: own items and the followed accounts' posts and reposts, newest first; a reply shows only
      // when its parent's author is the viewer or someone the viewer follows
      const bobTimeline = [
        'A4',
        'B3',
        'C2 reposted by bob',
        'C3',
        'C1 reposted by alice',
        'A2 reposted by carol',
        'A1 reposted by bob',
        'B2',
        'C2',
        'D2',
        'D1',
        'C1',
        'A3',
        'B1',
        'A2',
        'A1',
      ]
      expect(await timeline(bob)).toEqual(bobTimeline)
      expect(await timeline(alice)).toEqual([
        'A4',
        'B3',
        'C2 reposted by bob',
        'C1 reposted by alice',
        'A1 reposted by bob',
        'B2',
        'D2',
        'D1',
        'A3',
        'B1',
        'A2',
        'A1',
      ])
      expect(await timeline(carol)).toEqual(['C3', 'C1 reposted by alice', 'A2 reposted by carol', 'C2', 'C1', 'A2', 'A1'])
      expect(await timeline(dan)).toEqual(['A4', 'C1 reposted by alice', 'D2', 'D1', 'A2', 'A1'])

      // paging with the opaque cursor gives the same items, once each
      const paged: string[] = []
      let cursor: string | undefined
      for (let page = 0; page < 10; page++) {
        const res = await bob.agent.getTimeline({ limit: 4, ...(cursor ? { cursor } : {}) })
        expect(res.data.feed.length).toBeLessThanOrEqual(4)
        paged.push(...feed(res.data.feed))
        cursor = res.data.cursor
        if (!cursor || res.data.feed.length === 0) break
      }
      expect(paged).toEqual(bobTimeline)

      // the items themselves: counts, viewer state, reply context, embeds, repost reason
      const bobFeed = (await bob.agent.getTimeline({ limit: 100 })).data.feed
      const a1 = bobFeed.find((f) => f.post.uri === A1.uri && !f.reason)!
      expect(a1.post.author).toMatchObject({ did: alice.did, handle: 'alice.test', displayName: 'ALICE' })
      expect(a1.post.record).toMatchObject({ text: 'A1 by alice', createdAt: t(10) })
      expect({ likes: a1.post.likeCount, reposts: a1.post.repostCount, replies: a1.post.replyCount, quotes: a1.post.quoteCount }).toEqual({
        likes: 3,
        reposts: 1,
        replies: 2,
        quotes: 1,
      })
      expect(a1.post.viewer?.like).toBe(lB.uri)
      expect(a1.post.viewer?.repost).toBe(rB.uri)
      const reposted = bobFeed.find((f) => f.post.uri === A1.uri && f.reason)!
      expect(reposted.reason).toMatchObject({ $type: 'app.bsky.feed.defs#reasonRepost', by: { did: bob.did, handle: 'bob.test' } })
      const b1 = bobFeed.find((f) => f.post.uri === B1.uri)!
      expect(b1.reply?.parent).toMatchObject({ uri: A1.uri })
      expect(b1.reply?.root).toMatchObject({ uri: A1.uri })
      expect(b1.post.likeCount).toBe(1)
      expect(b1.post.replyCount).toBe(1)
      const a3 = bobFeed.find((f) => f.post.uri === A3.uri)!
      expect(a3.reply?.parent).toMatchObject({ uri: B1.uri, author: { did: bob.did } })
      expect(a3.reply?.root).toMatchObject({ uri: A1.uri, author: { did: alice.did } })
      const c1 = bobFeed.find((f) => f.post.uri === C1.uri && !f.reason)!
      expect(c1.post.embed).toMatchObject({
        $type: 'app.bsky.embed.record#view',
        record: { $type: 'app.bsky.embed.record#viewRecord', uri: A1.uri, author: { did: alice.did }, value: { text: 'A1 by alice' } },
      })
      expect({ reposts: c1.post.repostCount, quotes: c1.post.quoteCount }).toEqual({ reposts: 1, quotes: 1 })
      const a2 = bobFeed.find((f) => f.post.uri === A2.uri && !f.reason)!
      expect(a2.post.embed).toMatchObject({ $type: 'app.bsky.embed.images#view', images: [{ alt: 'a pixel' }] })
      expect(a2.post.repostCount).toBe(1)
      const b2 = bobFeed.find((f) => f.post.uri === B2.uri)!
      expect({ likes: b2.post.likeCount, replies: b2.post.replyCount, reposts: b2.post.repostCount }).toEqual({ likes: 1, replies: 1, reposts: 0 })
      const c2 = bobFeed.find((f) => f.post.uri === C2.uri && !f.reason)!
      expect(c2.post.repostCount).toBe(1)
      expect(c2.post.viewer?.repost).toBe(rB2.uri)

      // author feeds, every filter asked for
      expect(await authorFeed(bob, alice)).toEqual(['A4', 'C1 reposted by alice', 'A3', 'A2', 'A1'])
      expect(await authorFeed(bob, alice, 'posts_with_replies')).toEqual(['A4', 'C1 reposted by alice', 'A3', 'A2', 'A1'])
      expect(await authorFeed(bob, alice, 'posts_no_replies')).toEqual(['C1 reposted by alice', 'A2', 'A1'])
      expect(await authorFeed(bob, alice, 'posts_with_media')).toEqual(['A2'])
      expect(await authorFeed(alice, bob, 'posts_with_replies')).toEqual(['B3', 'C2 reposted by bob', 'A1 reposted by bob', 'B2', 'B1'])
      expect(await authorFeed(alice, bob, 'posts_no_replies')).toEqual(['B3', 'C2 reposted by bob', 'A1 reposted by bob', 'B2'])
      expect(await authorFeed(alice, bob, 'posts_with_media')).toEqual([])
      expect(await authorFeed(alice, carol, 'posts_with_replies')).toEqual(['C3', 'A2 reposted by carol', 'C2', 'C1'])
      expect(await authorFeed(alice, carol, 'posts_no_replies')).toEqual(['A2 reposted by carol', 'C2', 'C1'])

      // threads: replies below (the root author's first, then oldest first), parents above
      const t1 = await thread(bob, A1.uri)
      expect(t1.tree).toEqual({ post: 'A1', replies: [{ post: 'B1', replies: [{ post: 'A3' }] }, { post: 'D2' }] })
      expect(t1.parents).toBeUndefined()
      expect(t1.root.post).toMatchObject({ likeCount: 3, repostCount: 1, replyCount: 2, quoteCount: 1, viewer: { like: lB.uri, repost: rB.uri } })
      const shallow = (await bob.agent.getPostThread({ uri: A1.uri, depth: 1 })).data.thread
      expect(replyTree(shallow as Json)).toEqual({ post: 'A1', replies: [{ post: 'B1' }, { post: 'D2' }] })
      const oneUp = (await carol.agent.getPostThread({ uri: A3.uri, parentHeight: 1 })).data.thread as Json
      expect(parentChain(oneUp.parent)).toEqual({ post: 'B1' })
      const t3 = await thread(carol, A3.uri)
      expect(t3.tree).toEqual({ post: 'A3' })
      expect(t3.parents).toEqual({ post: 'B1', parent: { post: 'A1' } })
      const tb1 = await thread(dan, B1.uri)
      expect(tb1.tree).toEqual({ post: 'B1', replies: [{ post: 'A3' }] })
      expect(tb1.parents).toEqual({ post: 'A1' })
      expect((await thread(alice, B2.uri)).tree).toEqual({ post: 'B2', replies: [{ post: 'C3' }] })
      const td1 = await thread(carol, D1.uri)
      expect(td1.tree).toEqual({ post: 'D1', replies: [{ post: 'A4' }] })
      expect(td1.root.post).toMatchObject({ replyCount: 1 })

      // profiles: counts and the viewer's relationships
      expect(await getProfile(bob, alice)).toEqual({
        handle: 'alice.test',
        displayName: 'ALICE',
        followers: 3,
        follows: 2,
        posts: 4,
        viewer: { following: name(fBA.uri), followedBy: name(fAB.uri), blockedBy: false, muted: false },
      })
      expect(await getProfile(alice, bob)).toEqual({
        handle: 'bob.test',
        displayName: 'BOB',
        followers: 1,
        follows: 3,
        posts: 3,
        viewer: { following: name(fAB.uri), followedBy: name(fBA.uri), blockedBy: false, muted: false },
      })
      expect(await getProfile(bob, carol)).toEqual({
        handle: 'carol.test',
        displayName: 'CAROL',
        followers: 1,
        follows: 1,
        posts: 3,
        viewer: { following: name(fBC.uri), blockedBy: false, muted: false },
      })
      expect(await getProfile(alice, dan)).toEqual({
        handle: 'dan.test',
        displayName: 'DAN',
        followers: 2,
        follows: 1,
        posts: 2,
        viewer: { following: name(fAD.uri), followedBy: name(fDA.uri), blockedBy: false, muted: false },
      })
      expect((await alice.agent.getProfile({ actor: alice.did })).data).toMatchObject({ did: alice.did, followersCount: 3, followsCount: 2, postsCount: 4 })

      // notifications: exactly these, newest first, none read yet
      expect(await notifications(alice)).toEqual([
        'repost repost carol→A2 by carol on A2',
        'repost repost bob→A1 by bob on A1',
        'like like dan→A1 by dan on A1',
        'like like carol→A1 by carol on A1',
        'like like bob→A1 by bob on A1',
        'reply D2 by dan on A1',
        'quote C1 by carol on A1',
        'reply B1 by bob on A1',
        'follow follow dan→alice by dan',
        'follow follow carol→alice by carol',
        'follow follow bob→alice by bob',
      ])
      expect(await notifications(bob)).toEqual([
        'reply C3 by carol on B2',
        'like like dan→B2 by dan on B2',
        'like like alice→B1 by alice on B1',
        'reply A3 by alice on B1',
        'follow follow alice→bob by alice',
      ])
      expect(await notifications(carol)).toEqual([
        'quote B3 by bob on C1',
        'repost repost bob→C2 by bob on C2',
        'repost repost alice→C1 by alice on C1',
        'follow follow bob→carol by bob',
      ])
      expect(await notifications(dan)).toEqual(['reply A4 by alice on D1', 'follow follow alice→dan by alice', 'follow follow bob→dan by bob'])
      expect(await unread(alice)).toBe(11)
      expect(await unread(bob)).toBe(5)
      const listed = (await alice.agent.listNotifications()).data
      expect(listed.seenAt).toBeUndefined()
      const quoteNotif = listed.notifications.find((n) => n.reason === 'quote')!
      expect(quoteNotif.record).toMatchObject({ $type: 'app.bsky.feed.post', text: 'C1 by carol', embed: { record: { uri: A1.uri } } })
      expect(quoteNotif.author).toMatchObject({ did: carol.did, handle: 'carol.test', displayName: 'CAROL' })
    })
  })

  it('read-after-write: answers carry the viewer\'s indexed repo rev, and the PDS merges in newer own writes', async () => {
    const bobTimeline = [
      'A4',
      'B3',
      'C2 reposted by bob',
      'C3',
      'C1 reposted by alice',
      'A2 reposted by carol',
      'A1 reposted by bob',
      'B2',
      'C2',
      'D2',
      'D1',
      'C1',
      'A3',
      'B1',
      'A2',
      'A1',
    ]
    const latestRev = async (a: Account) => (await a.agent.com.atproto.sync.getLatestCommit({ did: a.did })).data.rev
    const res = await alice.agent.getTimeline({ limit: 1 })
    expect(res.headers['atproto-repo-rev']).toBe(await latestRev(alice))
    expect((await bob.agent.getProfile({ actor: alice.did })).headers['atproto-repo-rev']).toBe(await latestRev(bob))

    // with the AppView's ingestion paused, alice's new post and profile edit are not indexed...
    await network.appview.ctx.ingester.stop()
    let A5: Ref
    try {
      A5 = await post(alice, 'A5', 33)
      await alice.agent.com.atproto.repo.putRecord({
        repo: alice.did,
        collection: 'app.bsky.actor.profile',
        rkey: 'self',
        record: { $type: 'app.bsky.actor.profile', displayName: 'ALICE (edited)' },
      })
      expect(await timeline(bob)).toEqual(bobTimeline)
      expect((await bob.agent.getProfile({ actor: alice.did })).data.displayName).toBe('ALICE')
      // ...but alice sees them in her own views, merged in by her PDS
      const own = (await alice.agent.getTimeline({ limit: 100 })).data.feed
      expect(feed(own)[0]).toBe('A5')
      expect(own[0]!.post).toMatchObject({ uri: A5.uri, author: { did: alice.did, displayName: 'ALICE (edited)' }, likeCount: 0 })
      expect((await authorFeed(alice, alice))[0]).toBe('A5')
      expect((await alice.agent.getProfile({ actor: alice.did })).data.displayName).toBe('ALICE (edited)')
    } finally {
      network.appview.ctx.ingester.start()
    }
    // once indexed, everyone sees them, and alice sees her post once
    await eventually(async () => {
      expect(await timeline(bob)).toEqual(['A5', ...bobTimeline])
      expect(feed((await alice.agent.getTimeline({ limit: 100 })).data.feed).filter((x) => x === 'A5')).toEqual(['A5'])
      expect((await bob.agent.getProfile({ actor: alice.did })).data).toMatchObject({ displayName: 'ALICE (edited)', postsCount: 5 })
    })
    // back to the scenario
    await remove(alice, A5)
    await alice.agent.com.atproto.repo.putRecord({
      repo: alice.did,
      collection: 'app.bsky.actor.profile',
      rkey: 'self',
      record: { $type: 'app.bsky.actor.profile', displayName: 'ALICE' },
    })
    await eventually(async () => {
      expect(await timeline(bob)).toEqual(bobTimeline)
      expect((await bob.agent.getProfile({ actor: alice.did })).data).toMatchObject({ displayName: 'ALICE', postsCount: 4 })
      expect((await alice.agent.getTimeline({ limit: 1 })).headers['atproto-repo-rev']).toBe(await latestRev(alice))
    })
  })

  it('updateSeen marks what came before as read and getUnreadCount counts the rest', async () => {
    await alice.agent.updateSeenNotifications(t(19) as `${string}-${string}-${string}T${string}:${string}:${string}Z`)
    await eventually(async () => {
      const listed = (await alice.agent.listNotifications({ limit: 100 })).data
      expect(new Date(listed.seenAt!).toISOString()).toBe(t(19))
      expect(listed.notifications.map(notification)).toEqual([
        'repost repost carol→A2 by carol on A2',
        'repost repost bob→A1 by bob on A1',
        'like like dan→A1 by dan on A1',
        'like like carol→A1 by carol on A1',
        'like like bob→A1 by bob on A1',
        'reply D2 by dan on A1 (read)',
        'quote C1 by carol on A1 (read)',
        'reply B1 by bob on A1 (read)',
        'follow follow dan→alice by dan (read)',
        'follow follow carol→alice by carol (read)',
        'follow follow bob→alice by bob (read)',
      ])
      expect(await unread(alice)).toBe(5)
      // other accounts are not affected
      expect(await unread(bob)).toBe(5)
    })
  })

  it('a mute (app.bsky.graph.muteActor through the proxy) takes the muted account out of timeline and notifications', async () => {
    await alice.agent.app.bsky.graph.muteActor({ actor: dan.handle })
    await eventually(async () => {
      expect(await getProfile(alice, dan)).toEqual({
        handle: 'dan.test',
        displayName: 'DAN',
        followers: 2,
        follows: 1,
        posts: 2,
        viewer: { following: name(fAD.uri), followedBy: name(fDA.uri), blockedBy: false, muted: true },
      })
      expect((await alice.agent.app.bsky.graph.getMutes()).data.mutes.map((m) => m.did)).toEqual([dan.did])
      // (alice's own reply to dan stays: mutes hide the muted account's posts, not the viewer's)
      expect(await timeline(alice)).toEqual(['A4', 'B3', 'C2 reposted by bob', 'C1 reposted by alice', 'A1 reposted by bob', 'B2', 'A3', 'B1', 'A2', 'A1'])
      expect(await notifications(alice)).toEqual([
        'repost repost carol→A2 by carol on A2',
        'repost repost bob→A1 by bob on A1',
        'like like carol→A1 by carol on A1',
        'like like bob→A1 by bob on A1',
        'quote C1 by carol on A1 (read)',
        'reply B1 by bob on A1 (read)',
        'follow follow carol→alice by carol (read)',
        'follow follow bob→alice by bob (read)',
      ])
      expect(await unread(alice)).toBe(4)
      // mutes are private: nobody else is affected, and dan sees nothing
      expect(await timeline(bob)).toContain('D1')
      expect((await dan.agent.getProfile({ actor: alice.did })).data.viewer?.muted).toBe(false)
      expect((await bob.agent.getProfile({ actor: dan.did })).data.viewer?.muted).toBe(false)
    })
  })

  it('a block hides the blocked account from the blocker and shows viewer.blocking', async () => {
    blk = await create(bob, 'app.bsky.graph.block', { subject: dan.did, createdAt: t(40) }, 'block bob→dan')
    await eventually(async () => {
      expect(await timeline(bob)).toEqual([
        'B3',
        'C2 reposted by bob',
        'C3',
        'C1 reposted by alice',
        'A2 reposted by carol',
        'A1 reposted by bob',
        'B2',
        'C2',
        'C1',
        'A3',
        'B1',
        'A2',
        'A1',
      ])
      expect(await getProfile(bob, dan)).toEqual({
        handle: 'dan.test',
        displayName: 'DAN',
        followers: 2,
        follows: 1,
        posts: 2,
        // as the reference AppView does, follow URIs are not shown across a block
        viewer: { blocking: name(blk.uri), blockedBy: false, muted: false },
      })
      expect((await dan.agent.getProfile({ actor: bob.did })).data.viewer).toMatchObject({ blockedBy: true })
      expect((await bob.agent.app.bsky.graph.getBlocks()).data.blocks.map((b) => b.did)).toEqual([dan.did])
      // threads: the blocker does not see the blocked account's reply; the blocked account sees the blocker's post as blocked
      expect((await thread(bob, A1.uri)).tree).toEqual({ post: 'A1', replies: [{ post: 'B1', replies: [{ post: 'A3' }] }] })
      expect((await thread(alice, A1.uri)).tree).toEqual({ post: 'A1', replies: [{ post: 'B1', replies: [{ post: 'A3' }] }, { post: 'D2' }] })
      expect((await thread(dan, B1.uri)).tree).toBe('blocked B1')
      expect((await thread(bob, D1.uri)).tree).toBe('blocked D1')
      const ta4 = await thread(bob, A4.uri)
      expect(ta4.tree).toEqual({ post: 'A4' })
      expect(ta4.parents).toBe('blocked D1')
      // alice's reply to dan is left out of bob's feeds too
      expect(await authorFeed(bob, alice)).toEqual(['C1 reposted by alice', 'A3', 'A2', 'A1'])
      expect(await authorFeed(carol, alice)).toEqual(['A4', 'C1 reposted by alice', 'A3', 'A2', 'A1'])
      await expectXrpcError(bob.agent.getAuthorFeed({ actor: dan.did }), 'BlockedActor')
      await expectXrpcError(dan.agent.getAuthorFeed({ actor: bob.did }), 'BlockedByActor')
      // neither sees the other's interactions in notifications
      expect(await notifications(bob)).toEqual([
        'reply C3 by carol on B2',
        'like like alice→B1 by alice on B1',
        'reply A3 by alice on B1',
        'follow follow alice→bob by alice',
      ])
      expect(await unread(bob)).toBe(4)
      expect(await notifications(dan)).toEqual(['reply A4 by alice on D1', 'follow follow alice→dan by alice'])
      // counts are not changed by a block
      expect((await thread(alice, A1.uri)).root.post).toMatchObject({ likeCount: 3, replyCount: 2 })
      expect((await thread(alice, B2.uri)).root.post).toMatchObject({ likeCount: 1, replyCount: 1 })
    })
  })

  it('deleting posts, a like and a follow takes them out of the views and the counts', async () => {
    await remove(carol, C2)
    await remove(carol, lC)
    await remove(bob, fBC)
    // a post with a reply below it, a like and a notification
    await remove(bob, B1)
    await eventually(async () => {
      expect(await getProfile(alice, carol)).toEqual({
        handle: 'carol.test',
        displayName: 'CAROL',
        followers: 0,
        follows: 1,
        posts: 2,
        viewer: { followedBy: name(fCA.uri), blockedBy: false, muted: false },
      })
      expect((await thread(alice, A1.uri)).root.post).toMatchObject({ likeCount: 2, repostCount: 1, replyCount: 1 })
      // the deleted reply and what hung below it are gone from the thread; the orphan shows its parent as not found
      expect((await thread(alice, A1.uri)).tree).toEqual({ post: 'A1', replies: [{ post: 'D2' }] })
      const orphan = await thread(carol, A3.uri)
      expect(orphan.tree).toEqual({ post: 'A3' })
      expect(orphan.parents).toBe('notFound B1')
      await expectXrpcError(alice.agent.getPostThread({ uri: B1.uri }), 'NotFound')
      // bob no longer follows carol (her post and reply are gone), the post he reposted and his reply were deleted
      expect(await timeline(bob)).toEqual(['B3', 'C1 reposted by alice', 'A1 reposted by bob', 'B2', 'A3', 'A2', 'A1'])
      const a3 = (await bob.agent.getTimeline({ limit: 100 })).data.feed.find((f) => f.post.uri === A3.uri)!
      expect(a3.reply?.parent).toMatchObject({ $type: 'app.bsky.feed.defs#notFoundPost', uri: B1.uri, notFound: true })
      expect(a3.reply?.root).toMatchObject({ $type: 'app.bsky.feed.defs#postView', uri: A1.uri })
      expect(await timeline(alice)).toEqual(['A4', 'B3', 'C1 reposted by alice', 'A1 reposted by bob', 'B2', 'A3', 'A2', 'A1'])
      expect(await timeline(carol)).toEqual(['C3', 'C1 reposted by alice', 'A2 reposted by carol', 'C1', 'A2', 'A1'])
      expect(await authorFeed(alice, carol)).toEqual(['C3', 'A2 reposted by carol', 'C1'])
      expect(await authorFeed(alice, bob)).toEqual(['B3', 'A1 reposted by bob', 'B2'])
      expect(await getProfile(alice, bob)).toMatchObject({ followers: 1, follows: 2, posts: 2 })
      expect(await getProfile(bob, carol)).toMatchObject({ viewer: { following: undefined } })
      await expectXrpcError(alice.agent.getPostThread({ uri: C2.uri }), 'NotFound')
      expect(await notifications(alice)).toEqual([
        'repost repost carol→A2 by carol on A2',
        'repost repost bob→A1 by bob on A1',
        'like like bob→A1 by bob on A1',
        'quote C1 by carol on A1 (read)',
        'follow follow carol→alice by carol (read)',
        'follow follow bob→alice by bob (read)',
      ])
      expect(await unread(alice)).toBe(3)
      // notifications of the like and the reply of a deleted post stay (those records exist)
      expect(await notifications(bob)).toEqual([
        'reply C3 by carol on B2',
        'like like alice→B1 by alice on B1',
        'reply A3 by alice on B1',
        'follow follow alice→bob by alice',
      ])
      // the follow's notification is gone; bob's repost record still exists, so its notification stays
      expect(await notifications(carol)).toEqual([
        'quote B3 by bob on C1',
        'repost repost bob→C2 by bob on C2',
        'repost repost alice→C1 by alice on C1',
      ])
    })
  })

  it('deactivating an account hides its profile and content', async () => {
    await carol.agent.com.atproto.server.deactivateAccount({})
    await eventually(async () => {
      await expectXrpcError(alice.agent.getProfile({ actor: carol.handle }), 'AccountDeactivated')
      await expectXrpcError(bob.agent.getProfile({ actor: carol.did }), 'AccountDeactivated')
      await expectXrpcError(alice.agent.getAuthorFeed({ actor: carol.did }), 'AccountDeactivated')
      await expectXrpcError(alice.agent.getPostThread({ uri: C1.uri }), 'NotFound')
      // carol's post, reposted by alice, is gone from every timeline; so are carol's own reposts
      expect(await timeline(alice)).toEqual(['A4', 'B3', 'A1 reposted by bob', 'B2', 'A3', 'A2', 'A1'])
      expect(await timeline(bob)).toEqual(['B3', 'A1 reposted by bob', 'B2', 'A3', 'A2', 'A1'])
      expect(await timeline(dan)).toEqual(['A4', 'D2', 'D1', 'A2', 'A1'])
      expect(await authorFeed(bob, alice)).toEqual(['A3', 'A2', 'A1'])
      // her reply is gone from the thread, and the quote of her post no longer shows it
      expect((await thread(alice, B2.uri)).tree).toEqual({ post: 'B2' })
      const b3 = (await alice.agent.getTimeline({ limit: 100 })).data.feed.find((f) => f.post.uri === B3.uri)!
      expect(b3.post.embed).toMatchObject({ $type: 'app.bsky.embed.record#view', record: { uri: C1.uri } })
      expect((b3.post.embed as Json).record.$type).not.toBe('app.bsky.embed.record#viewRecord')
      // and carol's interactions are gone from notifications
      expect(await notifications(alice)).toEqual([
        'repost repost bob→A1 by bob on A1',
        'like like bob→A1 by bob on A1',
        'follow follow bob→alice by bob (read)',
      ])
      expect(await unread(alice)).toBe(2)
      expect(await notifications(bob)).toEqual(['like like alice→B1 by alice on B1', 'reply A3 by alice on B1', 'follow follow alice→bob by alice'])
      // getProfiles leaves the deactivated account out
      const profiles = (await bob.agent.getProfiles({ actors: [alice.did, carol.did] })).data.profiles
      expect(profiles.map((p) => p.did)).toEqual([alice.did])
    })
  })

  it('reactivating the account shows it again', async () => {
    await carol.agent.com.atproto.server.activateAccount()
    await eventually(async () => {
      expect(await getProfile(alice, carol)).toEqual({
        handle: 'carol.test',
        displayName: 'CAROL',
        followers: 0,
        follows: 1,
        posts: 2,
        viewer: { followedBy: name(fCA.uri), blockedBy: false, muted: false },
      })
      const withCarol = ['B3', 'C1 reposted by alice', 'A1 reposted by bob', 'B2', 'A3', 'A2', 'A1']
      expect(await timeline(alice)).toEqual(['A4', ...withCarol])
      expect(await timeline(bob)).toEqual(withCarol)
      expect(await timeline(dan)).toEqual(['A4', 'C1 reposted by alice', 'D2', 'D1', 'A2', 'A1'])
      expect(await notifications(alice)).toEqual([
        'repost repost carol→A2 by carol on A2',
        'repost repost bob→A1 by bob on A1',
        'like like bob→A1 by bob on A1',
        'quote C1 by carol on A1 (read)',
        'follow follow carol→alice by carol (read)',
        'follow follow bob→alice by bob (read)',
      ])
      expect(await unread(alice)).toBe(3)
      expect(await notifications(bob)).toEqual([
        'reply C3 by carol on B2',
        'like like alice→B1 by alice on B1',
        'reply A3 by alice on B1',
        'follow follow alice→bob by alice',
      ])
      expect((await thread(alice, C1.uri)).tree).toEqual({ post: 'C1' })
      expect((await thread(alice, B2.uri)).tree).toEqual({ post: 'B2', replies: [{ post: 'C3' }] })
      const b3 = (await alice.agent.getTimeline({ limit: 100 })).data.feed.find((f) => f.post.uri === B3.uri)!
      expect(b3.post.embed).toMatchObject({
        $type: 'app.bsky.embed.record#view',
        record: { $type: 'app.bsky.embed.record#viewRecord', uri: C1.uri, author: { did: carol.did } },
      })
    })
    // carol can use the AppView through the proxy again, and her new writes are indexed
    await post(carol, 'C4', 41)
    await eventually(async () => {
      expect(await authorFeed(alice, carol)).toEqual(['C4', 'C3', 'A2 reposted by carol', 'C1'])
      expect(await timeline(carol)).toEqual(['C4', 'C3', 'C1 reposted by alice', 'A2 reposted by carol', 'C1', 'A2', 'A1'])
    })
  })

  it('unmuteActor (through the proxy) shows the muted account again', async () => {
    await alice.agent.app.bsky.graph.unmuteActor({ actor: dan.did })
    await eventually(async () => {
      expect((await alice.agent.app.bsky.graph.getMutes()).data.mutes).toEqual([])
      expect((await alice.agent.getProfile({ actor: dan.did })).data.viewer?.muted).toBe(false)
      expect(await timeline(alice)).toEqual(['A4', 'B3', 'C1 reposted by alice', 'A1 reposted by bob', 'B2', 'D2', 'D1', 'A3', 'A2', 'A1'])
      expect(await notifications(alice)).toEqual([
        'repost repost carol→A2 by carol on A2',
        'repost repost bob→A1 by bob on A1',
        'like like dan→A1 by dan on A1',
        'like like bob→A1 by bob on A1',
        'reply D2 by dan on A1 (read)',
        'quote C1 by carol on A1 (read)',
        'follow follow dan→alice by dan (read)',
        'follow follow carol→alice by carol (read)',
        'follow follow bob→alice by bob (read)',
      ])
      expect(await unread(alice)).toBe(4)
    })
  })

  it('every app.bsky response validated against the lexicons', () => {
    expect(invalid).toEqual([])
    for (const nsid of [
      'app.bsky.feed.getTimeline',
      'app.bsky.feed.getAuthorFeed',
      'app.bsky.feed.getPostThread',
      'app.bsky.actor.getProfile',
      'app.bsky.actor.getProfiles',
      'app.bsky.notification.listNotifications',
      'app.bsky.notification.getUnreadCount',
      'app.bsky.notification.updateSeen',
      'app.bsky.graph.muteActor',
      'app.bsky.graph.unmuteActor',
      'app.bsky.graph.getMutes',
      'app.bsky.graph.getBlocks',
    ]) {
      expect(validated.get(nsid) ?? 0, nsid).toBeGreaterThan(0)
    }
  })
}

describe('AppView acceptance through the PDS proxy, AppView on SQLite', () => acceptance('sqlite'))
describe.runIf(!!PG_URL)('AppView acceptance through the PDS proxy, AppView on PostgreSQL', () => acceptance('postgres'))
